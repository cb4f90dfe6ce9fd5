# SPDX-License-Identifier: Apache-2.0
# ctest cmx_bench_json: runs cmx_bench (-DBENCH=path) on a small selection with
# --benchmark_format=json and checks what a script reading it relies on: stdout is JSON, its
# context names the executable, and every run carries the counters ratio_memcpy and ratio_unfused
# as positive numbers.
#   cmake -DBENCH=/path/to/cmx_bench -P check_json_output.cmake
set(filter "^(dispatch|combine_zero_copy)/ranks:2/")
execute_process(
  COMMAND "${BENCH}" "--benchmark_filter=${filter}" --benchmark_repetitions=1
          --benchmark_min_time=0.01 --benchmark_format=json
  OUTPUT_VARIABLE json ERROR_VARIABLE summary RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "cmx_bench exited with ${status}:\n${summary}")
endif()

string(JSON executable ERROR_VARIABLE json_error GET "${json}" context executable)
if(json_error)
  message(FATAL_ERROR "stdout is not the JSON report (${json_error}):\n${json}")
endif()
if(NOT executable STREQUAL BENCH)
  message(FATAL_ERROR "context.executable is '${executable}', expected '${BENCH}'")
endif()

string(JSON num_runs LENGTH "${json}" benchmarks)
if(num_runs LESS 2)
  message(FATAL_ERROR "expected a run each of dispatch and combine_zero_copy, got ${num_runs}")
endif()
math(EXPR last "${num_runs} - 1")
foreach(index RANGE ${last})
  string(JSON name GET "${json}" benchmarks ${index} name)
  foreach(counter ratio_memcpy ratio_unfused)
    string(JSON value ERROR_VARIABLE json_error GET "${json}" benchmarks ${index} ${counter})
    if(json_error OR NOT value GREATER 0)
      message(FATAL_ERROR "${name}: counter ${counter} is '${value}' ${json_error}")
    endif()
  endforeach()
  message(STATUS "${name}: counters present")
endforeach()
