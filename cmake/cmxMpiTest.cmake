# SPDX-License-Identifier: Apache-2.0
# cmx_add_mpi_test(name PROCESSES n [INTRA_NODE rma] [ENVIRONMENT vars...] COMMAND program args...)
# A ctest test that runs `program` under mpiexec with n processes on this machine (more processes
# than cores allowed), labelled "mpi". INTRA_NODE rma sets CMX_TEST_INTRA_NODE for the MPI tests'
# harness. Every such test may run as root (CI containers) and, in the ASan build, has Open MPI's
# own leaks suppressed (tests/backend/mpi/lsan.supp).
function(cmx_add_mpi_test name)
  cmake_parse_arguments(ARG "" "PROCESSES;INTRA_NODE" "ENVIRONMENT;COMMAND" ${ARGN})
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ARG_PROCESSES} --oversubscribe
            ${MPIEXEC_PREFLAGS} ${ARG_COMMAND})
  set(environment
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/backend/mpi/lsan.supp:print_suppressions=0
    ${ARG_ENVIRONMENT})
  if(ARG_INTRA_NODE)
    list(APPEND environment CMX_TEST_INTRA_NODE=${ARG_INTRA_NODE})
  endif()
  set_tests_properties(${name} PROPERTIES LABELS mpi TIMEOUT 600 ENVIRONMENT "${environment}")
endfunction()
