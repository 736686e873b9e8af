#include "dispatcherd/libpq_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>

namespace dispatcherd {
namespace {

struct CloseLibrary {
  void operator()(void* handle) const { dlclose(handle); }
};

std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}

}  // namespace

Result<LibPq> load_libpq(const char* soname) {
  const std::string prefix = std::string("cannot load ") + soname + ": ";
  // RTLD_NOW: a libpq too old for one of our functions fails here, not at its first call.
  // RTLD_LOCAL: its symbols stay out of the global namespace of a process that did not
  // link it (task libraries loaded later must not bind to it by accident).
  std::unique_ptr<void, CloseLibrary> handle(dlopen(soname, RTLD_NOW | RTLD_LOCAL));
  if (!handle) return Error{prefix + dl_error()};
  LibPq pq;
  // dlsym's void* becomes a function pointer: conditionally supported in C++, and what
  // POSIX requires to work.
#define DISPATCHERD_LIBPQ_RESOLVE(name)                                      \
  dlerror();                                                                 \
  pq.name = reinterpret_cast<decltype(pq.name)>(dlsym(handle.get(), #name)); \
  if (!pq.name) return Error{prefix + dl_error()};
  DISPATCHERD_LIBPQ_FUNCTIONS(DISPATCHERD_LIBPQ_RESOLVE)
#undef DISPATCHERD_LIBPQ_RESOLVE
  // The table points into the library from now on: never close it.
  static_cast<void>(handle.release());
  return pq;
}

static_assert(std::is_trivially_destructible_v<LibPq>, "libpq() relies on it");

Result<const LibPq*> libpq() {
  // Function-local statics are initialised once, thread-safely. LibPq is trivially
  // destructible, so no exit-time destructor invalidates it while other static objects
  // (an application's Publisher) still call PQfinish.
  static std::string error;
  static const LibPq table = [] {
    auto loaded = load_libpq(kLibPqSoname);
    if (loaded.ok()) return *loaded;
    error = loaded.error().message;
    return LibPq{};
  }();
  if (!error.empty()) return Error{error};
  return &table;
}

Result<const LibPq*> libpq_single_threaded() {
  constexpr const char* kVar = "GNUTLS_NO_IMPLICIT_INIT";
  if (std::getenv(kVar) != nullptr) return libpq();  // the caller's choice stands
  ::setenv(kVar, "1", 1);
  auto loaded = libpq();
  ::unsetenv(kVar);
  return loaded;
}

}  // namespace dispatcherd
