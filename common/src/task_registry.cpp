// The task registry, TaskContext and the worker hooks (common/include/dispatcherd/task.h).
//
// Registration happens at static-init time (DISPATCHERD_TASK) from any translation unit or
// task library, in no particular order, so every piece of state here is a function-local
// static: it is constructed on first use, whichever registration comes first.

#include <csignal>
#include <map>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "dispatcherd/log.h"
#include "dispatcherd/task.h"

namespace dispatcherd {

// The worker's cancel flag is a sig_atomic_t written by a signal handler and read through
// TaskContext's `const volatile int*`; the two types must be the same for that to be valid.
static_assert(std::is_same_v<std::sig_atomic_t, int>, "cancel flag must be a sig_atomic_t");

namespace {

// std::less<> makes find() accept a string_view without building a std::string per lookup.
using Registry = std::map<std::string, TaskEntry, std::less<>>;

Registry& registry() {
  static Registry r;
  return r;
}

WorkerHooks& hooks_storage() {
  static WorkerHooks h;
  return h;
}

}  // namespace

bool register_task(const char* name, TaskFn fn) {
  if (name == nullptr || *name == '\0' || fn == nullptr) {
    LOG_ERROR("refusing to register a task with an empty name or no function");
    return false;
  }
  auto [it, inserted] = registry().try_emplace(name, TaskEntry{name, fn});
  if (!inserted) {
    LOG_ERROR("task '" << name << "' is already registered; the second registration is ignored");
    return false;
  }
  return true;
}

const TaskEntry* find_task(std::string_view name) {
  const Registry& r = registry();
  auto it = r.find(name);
  return it == r.end() ? nullptr : &it->second;
}

std::vector<std::string> registered_task_names() {
  std::vector<std::string> names;
  names.reserve(registry().size());
  for (const auto& [name, entry] : registry()) names.push_back(name);  // map order is sorted
  return names;
}

const nlohmann::json& TaskInput::get() const {
  if (parsed_) return *parsed_;
  if (!parsed_body_) {
    parsed_body_ = true;
    owned_ = nlohmann::json::parse(body_, nullptr, /*allow_exceptions=*/false);
    if (!owned_.is_object()) owned_ = nlohmann::json::object();
    if (!uuid_.empty()) owned_["uuid"] = uuid_;
    if (!channel_.empty()) owned_["channel"] = channel_;
  }
  return owned_;
}

TaskContext::TaskContext(const TaskInput& message, std::string uuid, int worker_id,
                         const volatile int* cancel_flag, ControlFn control, double received_at)
    : own_({}, {}, {}),
      message_(&message),
      uuid_(std::move(uuid)),
      worker_id_(worker_id),
      cancel_flag_(cancel_flag),
      control_(std::move(control)),
      received_at_(received_at) {}

TaskContext::TaskContext(const nlohmann::json& message, std::string uuid, int worker_id,
                         const volatile int* cancel_flag, ControlFn control, double received_at)
    : own_(message),
      message_(&own_),
      uuid_(std::move(uuid)),
      worker_id_(worker_id),
      cancel_flag_(cancel_flag),
      control_(std::move(control)),
      received_at_(received_at) {}

// The worker rejects wrongly typed args/kwargs before building a context; the defaults for
// them anyway mean args() is always an array and kwargs() always an object.
const nlohmann::json& TaskContext::args() const {
  static const nlohmann::json kNone = nlohmann::json::array();
  const nlohmann::json& m = message();
  if (auto it = m.find("args"); it != m.end() && it->is_array()) return *it;
  return kNone;
}

const nlohmann::json& TaskContext::kwargs() const {
  static const nlohmann::json kNone = nlohmann::json::object();
  const nlohmann::json& m = message();
  if (auto it = m.find("kwargs"); it != m.end() && it->is_object()) return *it;
  return kNone;
}

nlohmann::json TaskContext::control(const std::string& command, const nlohmann::json& data) {
  if (!control_) throw std::runtime_error("control is not available");
  return control_(command, data);
}

void set_worker_hooks(WorkerHooks hooks) {
  hooks_storage() = std::move(hooks);
}

const WorkerHooks& worker_hooks() {
  return hooks_storage();
}

}  // namespace dispatcherd
