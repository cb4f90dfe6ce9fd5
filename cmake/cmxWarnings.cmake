# SPDX-License-Identifier: Apache-2.0
# cmx_project_options(target): the flags every test, benchmark and example of cmx is built with:
# strict warnings as errors, -march=native if CMX_NATIVE, and the sanitizers of CMX_SANITIZE.
function(cmx_project_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  if(CMX_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  if(CMX_SANITIZE)
    list(JOIN CMX_SANITIZE "," sanitizers)
    target_compile_options(${target} PRIVATE -fsanitize=${sanitizers} -fno-omit-frame-pointer
                                             -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${sanitizers})
  endif()
endfunction()
