# dispatcherd_sanitizers: ASan + UBSan when DISPATCHERD_SANITIZE is ON (`make asan`).
option(DISPATCHERD_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
add_library(dispatcherd_sanitizers INTERFACE)
if(DISPATCHERD_SANITIZE)
  target_compile_options(dispatcherd_sanitizers INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(dispatcherd_sanitizers INTERFACE -fsanitize=address,undefined)
  # GCC defines __SANITIZE_ADDRESS__ under -fsanitize=address, clang 14 only answers
  # __has_feature(address_sanitizer); the tests' sanitizer_build() reads the former.
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS -fsanitize=address)
  set(CMAKE_REQUIRED_LINK_OPTIONS -fsanitize=address)
  check_cxx_source_compiles("
    #ifndef __SANITIZE_ADDRESS__
    #error no __SANITIZE_ADDRESS__
    #endif
    int main() { return 0; }" DISPATCHERD_HAS_SANITIZE_ADDRESS_MACRO)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT DISPATCHERD_HAS_SANITIZE_ADDRESS_MACRO)
    target_compile_definitions(dispatcherd_sanitizers INTERFACE __SANITIZE_ADDRESS__=1)
  endif()
endif()
