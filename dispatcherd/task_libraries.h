#pragma once
// Task libraries (DESIGN section 2): shared objects named in extensions.task_libraries that
// register tasks into this process's registry. They are loaded right after the config, while
// main is still single-threaded and before the zygote exists, so every worker inherits them.

#include <string>
#include <utility>
#include <vector>

#include "dispatcherd/result.h"

namespace dispatcherd {

/// Owns one dlopen() handle (RAII, move-only) and dlclose()s it on destruction.
/// The loader opens task libraries with RTLD_NODELETE, so closing drops the reference but never
/// unmaps code that the registry, worker hooks or a stray thread may still point into.
class DlHandle {
 public:
  DlHandle() = default;
  /// Takes ownership of `handle` (a dlopen() result; nullptr means "none").
  explicit DlHandle(void* handle) : handle_(handle) {}
  DlHandle(const DlHandle&) = delete;
  DlHandle& operator=(const DlHandle&) = delete;
  DlHandle(DlHandle&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  DlHandle& operator=(DlHandle&& o) noexcept {
    if (this != &o) reset(std::exchange(o.handle_, nullptr));
    return *this;
  }
  ~DlHandle() { reset(); }

  /// The raw handle (still owned), for dlsym().
  void* get() const { return handle_; }
  /// True when a handle is held.
  explicit operator bool() const { return handle_ != nullptr; }
  /// dlclose()s the current handle (if any) and takes `handle`.
  void reset(void* handle = nullptr);

 private:
  void* handle_ = nullptr;
};

/// A loaded task library: the resolved path it was loaded from and its handle.
struct TaskLibrary {
  std::string path;
  DlHandle handle;
};

/// Where a task_libraries entry points: an absolute `entry` as is, a relative one joined to the
/// directory of `config_path` (so a config and its libraries move together). The result always
/// contains a '/', so dlopen() never searches LD_LIBRARY_PATH or the system directories.
std::string resolve_task_library_path(const std::string& entry, const std::string& config_path);

/// The number of threads in this process (`Threads:` of /proc/self/status), or -1 if unknown.
int process_thread_count();

/// Loads each of `entries` (resolved with resolve_task_library_path) in order, with RTLD_NOW so
/// a missing symbol fails here and not inside a worker. Each library must define the ABI symbol
/// of DISPATCHERD_TASK_LIBRARY() with this build's kTaskAbiVersion and must not start a thread
/// while loading (the zygote forks from this process; a fork copies only the calling thread).
/// The first failure stops the loading: its message names the file and says what was wrong.
/// Keep the result for the life of the process.
Result<std::vector<TaskLibrary>> load_task_libraries(const std::vector<std::string>& entries,
                                                     const std::string& config_path);

}  // namespace dispatcherd
