# SPDX-License-Identifier: Apache-2.0
# cmx::ascend, the Ascend backend (CMX_BACKEND=ascend): cmx::cmx plus cmx_ascend_kernels, the
# AIV entries of cmx's kernels (src/ascend/kernels.cpp).
#   CMX_ASCEND_SIM=ON: the kernel translation unit is compiled by the host compiler against the
#     clean-room shim (sim/ascend), whose simulation runs the kernels on the CPU (what CI builds
#     and tests).
#   CMX_ASCEND_SIM=OFF: the CANN toolkit (ASCEND_HOME_PATH) compiles it with ascendc_library,
#     and cmx::ascend links ACL and CANN SHMEM. We have had neither toolkit nor NPU: this branch
#     has never been configured; it follows the toolkit's documented CMake usage.
if(CMX_ASCEND_SIM)
  # The clean-room simulation (sim/ascend, never installed): its headers of CANN's names
  # (sim/ascend/toolkit) stand where the toolkit's would. CMX_ASCEND_SIM tells the tests and
  # examples that they run on it; cmx's installed headers never test it.
  add_library(cmx_ascend_sim INTERFACE)
  target_include_directories(cmx_ascend_sim INTERFACE "${PROJECT_SOURCE_DIR}"
                                                      "${PROJECT_SOURCE_DIR}/sim/ascend/toolkit")
  target_compile_definitions(cmx_ascend_sim INTERFACE CMX_ASCEND_SIM)
  target_link_libraries(cmx_ascend_sim INTERFACE cmx)
  add_library(cmx_ascend_kernels STATIC src/ascend/kernels.cpp)
  target_link_libraries(cmx_ascend_kernels PUBLIC cmx cmx_ascend_sim)
  if(COMMAND cmx_project_options)  # the tests' warnings and sanitizers: the kernels run in it
    cmx_project_options(cmx_ascend_kernels)
  endif()
else()
  set(ASCEND_CANN_PACKAGE_PATH "$ENV{ASCEND_HOME_PATH}" CACHE PATH
      "The CANN toolkit (ASCEND_HOME_PATH, set by its set_env.sh)")
  set(SOC_VERSION "" CACHE STRING "The NPU to compile for, as the toolkit names it")
  set(CMX_ASCEND_SHMEM_ROOT "$ENV{SHMEM_HOME_PATH}" CACHE PATH
      "The CANN SHMEM library's install prefix (include/aclshmem.h, lib/)")
  if(NOT ASCEND_CANN_PACKAGE_PATH OR NOT SOC_VERSION OR NOT CMX_ASCEND_SHMEM_ROOT)
    message(FATAL_ERROR "CMX_BACKEND=ascend needs the CANN toolkit (ASCEND_HOME_PATH), the "
                        "NPU's SOC_VERSION and CANN SHMEM (CMX_ASCEND_SHMEM_ROOT); without them, "
                        "configure with -DCMX_ASCEND_SIM=ON for the simulation")
  endif()
  foreach(dir compiler/tikcpp/ascendc_kernel_cmake tools/tikcpp/ascendc_kernel_cmake)
    if(EXISTS "${ASCEND_CANN_PACKAGE_PATH}/${dir}/ascendc.cmake")
      include("${ASCEND_CANN_PACKAGE_PATH}/${dir}/ascendc.cmake")
    endif()
  endforeach()
  if(NOT COMMAND ascendc_library)
    message(FATAL_ERROR "no ascendc.cmake under ${ASCEND_CANN_PACKAGE_PATH}: not a CANN toolkit")
  endif()
  ascendc_library(cmx_ascend_kernels STATIC src/ascend/kernels.cpp)
  ascendc_include_directories(cmx_ascend_kernels PRIVATE "${PROJECT_SOURCE_DIR}/include"
                              "${CMX_ASCEND_SHMEM_ROOT}/include")
  ascendc_compile_options(cmx_ascend_kernels PRIVATE -std=c++20)
  find_library(CMX_ASCENDCL ascendcl HINTS "${ASCEND_CANN_PACKAGE_PATH}/lib64" REQUIRED)
  find_library(CMX_ASCEND_SHMEM NAMES shmem aclshmem HINTS "${CMX_ASCEND_SHMEM_ROOT}/lib"
               REQUIRED)
  target_include_directories(cmx_ascend_kernels PUBLIC "${ASCEND_CANN_PACKAGE_PATH}/include"
                                                       "${CMX_ASCEND_SHMEM_ROOT}/include")
  target_link_libraries(cmx_ascend_kernels PUBLIC cmx "${CMX_ASCENDCL}" "${CMX_ASCEND_SHMEM}")
endif()

add_library(cmx_ascend INTERFACE)
add_library(cmx::ascend ALIAS cmx_ascend)
target_link_libraries(cmx_ascend INTERFACE cmx cmx_ascend_kernels)
