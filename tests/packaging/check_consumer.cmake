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
