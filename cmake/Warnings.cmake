# dispatcherd_warnings: linked privately by every target of ours. DISPATCHERD_WERROR turns
# warnings into errors; CI and `make` set it, a user building by hand may leave it off.
option(DISPATCHERD_WERROR "Treat compiler warnings as errors" OFF)
add_library(dispatcherd_warnings INTERFACE)
target_compile_options(dispatcherd_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Wunused -Woverloaded-virtual -Wdouble-promotion -Wformat=2
  -Wimplicit-fallthrough)
if(DISPATCHERD_WERROR)
  target_compile_options(dispatcherd_warnings INTERFACE -Werror)
endif()
