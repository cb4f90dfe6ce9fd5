# SPDX-License-Identifier: Apache-2.0
# Installs the headers and a package config: find_package(cmx CONFIG REQUIRED) then
# target_link_libraries(app PRIVATE cmx::cmx); with the MPI backend, find_package(cmx CONFIG
# REQUIRED COMPONENTS mpi) and cmx::mpi. Header-only, so architecture-independent. Included when
# CMX_INSTALL is on (the default for a top-level build).
include(CMakePackageConfigHelpers)
set(CMX_CONFIG_DIR "${CMAKE_INSTALL_DATADIR}/cmake/cmx")

install(DIRECTORY include/cmx DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES LICENSE DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/cmx")
install(TARGETS cmx EXPORT cmxTargets)
install(EXPORT cmxTargets NAMESPACE cmx:: DESTINATION "${CMX_CONFIG_DIR}")
if(TARGET cmx_mpi)  # in an export set of its own: only a consumer of cmx::mpi needs MPI
  install(TARGETS cmx_mpi EXPORT cmxMpiTargets)
  install(EXPORT cmxMpiTargets NAMESPACE cmx:: DESTINATION "${CMX_CONFIG_DIR}")
endif()
configure_package_config_file(cmake/cmxConfig.cmake.in
  "${PROJECT_BINARY_DIR}/cmxConfig.cmake" INSTALL_DESTINATION "${CMX_CONFIG_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/cmxConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/cmxConfig.cmake" "${PROJECT_BINARY_DIR}/cmxConfigVersion.cmake"
  cmake/cmxDependencies.cmake DESTINATION "${CMX_CONFIG_DIR}")
