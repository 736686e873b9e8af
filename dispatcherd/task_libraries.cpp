// Loading extensions.task_libraries: dlopen, ABI check, single-thread check.
#include "dispatcherd/task_libraries.h"

#include <dlfcn.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "dispatcherd/task.h"

namespace dispatcherd {

void DlHandle::reset(void* handle) {
  if (handle_ != nullptr) ::dlclose(handle_);
  handle_ = handle;
}

std::string resolve_task_library_path(const std::string& entry, const std::string& config_path) {
  namespace fs = std::filesystem;
  fs::path p(entry);
  if (p.is_absolute()) return p.lexically_normal().string();
  fs::path dir = fs::path(config_path).parent_path();
  std::string out = (dir / p).lexically_normal().string();
  // lexically_normal() turns "./x.so" into "x.so", which dlopen() would search for.
  if (out.find('/') == std::string::npos) out.insert(0, "./");
  return out;
}

int process_thread_count() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "Threads:") {
      int n = -1;
      in >> n;
      return n;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
}

namespace {

// dlerror() is the only place the loader's reason lives; it is reset by each call.
std::string last_dl_error() {
  const char* e = ::dlerror();
  return e != nullptr ? e : "unknown dlopen error";
}

Result<DlHandle> load_one(const std::string& path) {
  const int threads_before = process_thread_count();
  ::dlerror();
  // RTLD_NOW: an unresolved symbol fails start-up now, not a task in a worker later.
  // RTLD_LOCAL: libraries do not see each other's symbols. RTLD_NODELETE: see DlHandle.
  DlHandle handle(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE));
  if (!handle) return Error{"task library " + path + ": cannot load: " + last_dl_error()};

  // Checked first: a thread started by the library's static initialisers is already running,
  // and a later fork would copy only this thread (with whatever locks the other one held).
  const int threads_after = process_thread_count();
  if (threads_before > 0 && threads_after > threads_before)
    return Error{"task library " + path + ": started a thread while loading (threads " +
                 std::to_string(threads_before) + " -> " + std::to_string(threads_after) +
                 "); dispatcherd forks its workers from this process, which must stay "
                 "single-threaded: start threads inside a task or a worker hook instead"};

  ::dlerror();
  const auto* abi = static_cast<const int*>(::dlsym(handle.get(), DISPATCHERD_TASK_ABI_SYMBOL));
  if (abi == nullptr)
    return Error{"task library " + path +
                 ": no " DISPATCHERD_TASK_ABI_SYMBOL
                 " symbol; add DISPATCHERD_TASK_LIBRARY(); to one of its source files"};
  if (*abi != kTaskAbiVersion)
    return Error{"task library " + path + ": built for task ABI version " + std::to_string(*abi) +
                 ", this dispatcherd has version " + std::to_string(kTaskAbiVersion) +
                 "; rebuild it against this dispatcherd's <dispatcherd/task.h>"};
  return handle;
}

}  // namespace

Result<std::vector<TaskLibrary>> load_task_libraries(const std::vector<std::string>& entries,
                                                     const std::string& config_path) {
  std::vector<TaskLibrary> libraries;
  libraries.reserve(entries.size());
  for (const auto& entry : entries) {
    std::string path = resolve_task_library_path(entry, config_path);
    auto loaded = load_one(path);
    if (!loaded) return loaded.error();
    libraries.push_back(TaskLibrary{std::move(path), std::move(loaded).value()});
  }
  return libraries;
}

}  // namespace dispatcherd
