# SPDX-License-Identifier: Apache-2.0
# What the library needs wherever it is used: oneTBB (Debian: libtbb-dev).
include(CMakeFindDependencyMacro)
find_dependency(Threads)
find_dependency(TBB)
