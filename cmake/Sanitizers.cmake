# dispatcherd_sanitizers: ASan + UBSan when DISPATCHERD_SANITIZE is ON (`make asan`).
option(DISPATCHERD_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
add_library(dispatcherd_sanitizers INTERFACE)
if(DISPATCHERD_SANITIZE)
  target_compile_options(dispatcherd_sanitizers INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(dispatcherd_sanitizers INTERFACE -fsanitize=address,undefined)
endif()
