# SPDX-License-Identifier: Apache-2.0
# cmake -DCMX_SOURCE_DIR=... -DCMX_BINARY_DIR=... -DWORK_DIR=... -DMODE=find_package|add_subdirectory
#       -DCONSUMER=consumer|consumer_mpi [-DRUNNER="launcher args..."] -DGENERATOR=...
#       -DCXX_COMPILER=... -P check_consumer.cmake
# Installs cmx (find_package mode), then configures, builds and runs tests/packaging/<CONSUMER>
# (through RUNNER, e.g. mpiexec, if given).
file(REMOVE_RECURSE "${WORK_DIR}")
set(consumer_args "")
if(MODE STREQUAL "find_package")
  execute_process(COMMAND ${CMAKE_COMMAND} --install "${CMX_BINARY_DIR}" --prefix "${WORK_DIR}/prefix"
                  COMMAND_ERROR_IS_FATAL ANY)
  list(APPEND consumer_args "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
  if(NOT EXISTS "${WORK_DIR}/prefix/share/doc/cmx/LICENSE")
    message(FATAL_ERROR "the installed package has no share/doc/cmx/LICENSE")
  endif()
  # The clean-room Ascend simulation (sim/) is cmx's test machinery: none of it is installed.
  file(GLOB_RECURSE installed RELATIVE "${WORK_DIR}/prefix" "${WORK_DIR}/prefix/*")
  file(GLOB_RECURSE sim_files RELATIVE "${CMX_SOURCE_DIR}/sim" "${CMX_SOURCE_DIR}/sim/*.h"
       "${CMX_SOURCE_DIR}/sim/*.hpp")
  foreach(path IN LISTS installed)
    get_filename_component(name "${path}" NAME)
    foreach(sim_file IN LISTS sim_files)
      get_filename_component(sim_name "${sim_file}" NAME)
      if(name STREQUAL sim_name)
        message(FATAL_ERROR "installed ${path}, a file of the simulation (sim/${sim_file})")
      endif()
    endforeach()
    if(path MATCHES "\\.(h|hpp)$")
      file(STRINGS "${WORK_DIR}/prefix/${path}" sim_lines REGEX "ascend_sim::|#include .sim/")
      if(sim_lines)
        message(FATAL_ERROR "installed ${path} names the simulation: ${sim_lines}")
      endif()
    endif()
  endforeach()
else()
  list(APPEND consumer_args "-DCMX_SOURCE_DIR=${CMX_SOURCE_DIR}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${CMAKE_CURRENT_LIST_DIR}/${CONSUMER}"
                        -B "${WORK_DIR}/build" -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
                        -DCMAKE_BUILD_TYPE=Release ${consumer_args}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" COMMAND_ERROR_IS_FATAL ANY)
separate_arguments(runner UNIX_COMMAND "${RUNNER}")
execute_process(COMMAND ${runner} "${WORK_DIR}/build/consumer" COMMAND_ERROR_IS_FATAL ANY)
if(MODE STREQUAL "add_subdirectory")
  # An engine that embeds cmx installs only its own files (CMX_INSTALL is off below the top level).
  execute_process(COMMAND ${CMAKE_COMMAND} --install "${WORK_DIR}/build"
                          --prefix "${WORK_DIR}/consumer_prefix" COMMAND_ERROR_IS_FATAL ANY)
  file(GLOB_RECURSE leaked RELATIVE "${WORK_DIR}/consumer_prefix" "${WORK_DIR}/consumer_prefix/*")
  if(leaked)
    message(FATAL_ERROR "add_subdirectory(cmx) installed files of cmx: ${leaked}")
  endif()
endif()
