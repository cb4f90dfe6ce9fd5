# SPDX-License-Identifier: Apache-2.0
# cmx_add_mpi_test(name PROCESSES n [INTRA_NODE rma] [ENVIRONMENT vars...] COMMAND program args...)
# A ctest test that runs `program` under mpiexec with n processes on this machine (more processes
# than cores allowed), labelled "mpi". INTRA_NODE rma sets CMX_TEST_INTRA_NODE for the MPI tests'
# harness. Every such test may run as root (CI containers). In the ASan build LeakSanitizer is off
# for them: Open MPI keeps allocations in its components until exit and unloads the components
# before LeakSanitizer runs, so their leaks can be neither attributed nor suppressed (memory
# errors and undefined behaviour are still checked; cmx's shared code is leak-checked by the
# TBB suites).
function(cmx_add_mpi_test name)
  cmake_parse_arguments(ARG "" "PROCESSES;INTRA_NODE" "ENVIRONMENT;COMMAND" ${ARGN})
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ARG_PROCESSES} --oversubscribe
            ${MPIEXEC_PREFLAGS} ${ARG_COMMAND})
  set(environment OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ${ARG_ENVIRONMENT})
  if("address" IN_LIST CMX_SANITIZE)
    list(APPEND environment ASAN_OPTIONS=detect_leaks=0:abort_on_error=1)
  endif()
  if(ARG_INTRA_NODE)
    list(APPEND environment CMX_TEST_INTRA_NODE=${ARG_INTRA_NODE})
  endif()
  set_tests_properties(${name} PROPERTIES LABELS mpi TIMEOUT 600 ENVIRONMENT "${environment}")
endfunction()
