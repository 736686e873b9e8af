#pragma once
// The public task API. A task is a named C++ function registered at static-init time:
//
//   nlohmann::json hello(dispatcherd::TaskContext& ctx) {
//     return "hello " + ctx.kwargs().value("name", std::string("world"));
//   }
//   DISPATCHERD_TASK("demo.hello", hello);
//
// The `task` string of a message is the registry key. Nothing received over the wire is ever
// evaluated: a name that is not registered is an unknown task (an error, counted).
// Tasks run inside worker processes, one at a time per worker.
//
// Two ways to ship tasks (README "Writing tasks"):
//  * library mode: an application links dispatcherd::dispatcherd, registers its tasks with
//    DISPATCHERD_TASK and calls dispatcherd::run_service(argc, argv) from main();
//  * task library: a shared object linked against dispatcherd::headers only, with one
//    DISPATCHERD_TASK_LIBRARY() line, named in the config's extensions.task_libraries and
//    loaded by the stock `dispatcherd` binary before any worker exists.
// This header is the whole public API: it includes only the standard library and nlohmann/json.

#include <exception>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace dispatcherd {

/// ABI version of the registry; task libraries built against another version are refused.
/// Bump it whenever a change here (TaskContext's layout, TaskFn, register_task) would break a
/// library built against the old header.
constexpr int kTaskAbiVersion = 3;

/// Thrown by TaskContext::check_cancelled(); reported as a cancel, not a failure.
class TaskCancelled : public std::exception {
 public:
  const char* what() const noexcept override { return "task cancelled"; }
};

/// A task's message as its TaskContext sees it: a parsed object, or the text of one, parsed
/// only when the task first asks for args(), kwargs() or message() (a task that needs neither
/// never pays for the parse). Not to be confused with publish.h's TaskMessage, what a
/// publisher sends.
class TaskInput {
 public:
  /// Refers to `parsed`, which must outlive this.
  explicit TaskInput(const nlohmann::json& parsed) : parsed_(&parsed) {}
  /// Refers to `body`, the text of a JSON object; `uuid` and `channel`, when not empty, are set
  /// in the parsed object (main assigns them). All three must outlive this.
  TaskInput(std::string_view body, std::string_view uuid, std::string_view channel)
      : body_(body), uuid_(uuid), channel_(channel) {}
  /// The message object, parsed now if not yet (text that is not an object gives {}).
  const nlohmann::json& get() const;

 private:
  const nlohmann::json* parsed_ = nullptr;
  std::string_view body_, uuid_, channel_;
  mutable nlohmann::json owned_;
  mutable bool parsed_body_ = false;
};

/// What a running task knows about itself and may ask of the service.
class TaskContext {
 public:
  /// Runs a control command against the service (`bind` tasks, upstream-spec §4.5) and waits
  /// for its result (no `node_id` in it).
  using ControlFn = std::function<nlohmann::json(const std::string&, const nlohmann::json&)>;

  /// Built by the worker for each task; `cancel_flag` is set asynchronously on cancel.
  /// `message` must outlive the context. `received_at`: see received_at().
  TaskContext(const TaskInput& message, std::string uuid, int worker_id,
              const volatile int* cancel_flag, ControlFn control, double received_at = 0);
  /// The same for a parsed message, which must outlive the context.
  TaskContext(const nlohmann::json& message, std::string uuid, int worker_id,
              const volatile int* cancel_flag, ControlFn control, double received_at = 0);
  TaskContext(const TaskContext&) = delete;  // message_ may point into the object itself
  TaskContext& operator=(const TaskContext&) = delete;

  /// The task's uuid ("<unknown>" if the message had none).
  const std::string& uuid() const { return uuid_; }
  /// The id of the worker running it.
  int worker_id() const { return worker_id_; }
  /// When the service's main process took this task's message (read and scanned it), in
  /// CLOCK_MONOTONIC seconds (std::chrono::steady_clock's clock on Linux). Now minus this is how
  /// long the task waited: queue, any `delay`, and the hand-over. 0 when not known: callbacks,
  /// errbacks and contexts built outside a worker.
  double received_at() const { return received_at_; }
  /// Positional arguments (an array, [] when absent).
  const nlohmann::json& args() const;
  /// Keyword arguments (an object, {} when absent).
  const nlohmann::json& kwargs() const;
  /// The whole message as received, with the uuid and channel main assigned.
  const nlohmann::json& message() const { return message_->get(); }
  /// True once a cancel or timeout was requested for this task.
  bool cancelled() const { return cancel_flag_ && *cancel_flag_ != 0; }
  /// Throws TaskCancelled when cancelled(); call it at safe points of long work.
  void check_cancelled() const {
    if (cancelled()) throw TaskCancelled();
  }
  /// Runs control `command` with `data` in the main process and returns its reply.
  nlohmann::json control(const std::string& command,
                         const nlohmann::json& data = nlohmann::json::object());

 private:
  TaskInput own_;  // for the parsed-message constructor
  const TaskInput* message_;
  std::string uuid_;
  int worker_id_;
  const volatile int* cancel_flag_;
  ControlFn control_;
  double received_at_;
};

/// A task function: returns a JSON result (only logged) or throws to fail.
using TaskFn = nlohmann::json (*)(TaskContext&);

/// One registered task.
struct TaskEntry {
  std::string name;
  TaskFn fn = nullptr;
};

/// Registers `fn` under `name`; a second registration of a name is refused (returns false and
/// logs). Call before workers exist (static init, or a task library's load).
bool register_task(const char* name, TaskFn fn);
/// The registered task named `name`, or nullptr.
const TaskEntry* find_task(std::string_view name);
/// Names of all registered tasks, sorted (for metric labels and `--list-tasks`).
std::vector<std::string> registered_task_names();

/// Worker hooks (upstream's worker callbacks, §7.10), for library users. Each may be empty.
/// They run in the worker process; an exception from one is logged and ignored.
struct WorkerHooks {
  std::function<void(int worker_id)> on_start;
  std::function<void(const nlohmann::json& message)> before_task;
  std::function<void(const nlohmann::json& message, const nlohmann::json& result)> after_task;
  std::function<void()> on_idle;  ///< every worker.worker_kwargs.idle_timeout idle seconds
  std::function<void()> on_shutdown;
};
/// Installs the hooks (replacing earlier ones). Call before run_service().
void set_worker_hooks(WorkerHooks hooks);
/// The installed hooks.
const WorkerHooks& worker_hooks();

/// Runs the dispatcherd service with this process's registered tasks (library mode): parses
/// the same command line as the `dispatcherd` binary and returns its exit code.
int run_service(int argc, char** argv);

}  // namespace dispatcherd

#define DISPATCHERD_CONCAT_INNER(a, b) a##b
#define DISPATCHERD_CONCAT(a, b) DISPATCHERD_CONCAT_INNER(a, b)
/// Registers `fn` as the task `name` at static-init time.
#define DISPATCHERD_TASK(name, fn)                                                                \
  [[maybe_unused]] static const bool DISPATCHERD_CONCAT(dispatcherd_task_registered_, __LINE__) = \
      ::dispatcherd::register_task(name, fn)

/// The name of the symbol DISPATCHERD_TASK_LIBRARY() defines; the loader looks it up with dlsym.
#define DISPATCHERD_TASK_ABI_SYMBOL "dispatcherd_task_abi_version"
/// Marks a shared object as a dispatcherd task library: use it exactly once per library, at
/// namespace scope. It exports the ABI version the library was compiled against; the loader
/// refuses a library without it or with another version. Default visibility keeps the symbol
/// exported when the library is built with -fvisibility=hidden.
#define DISPATCHERD_TASK_LIBRARY()                                                           \
  extern "C" __attribute__((visibility("default"))) const int dispatcherd_task_abi_version = \
      ::dispatcherd::kTaskAbiVersion
