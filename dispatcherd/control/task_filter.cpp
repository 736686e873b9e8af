// TaskFilter (upstream-spec §4.4): the filter `running` and `cancel` apply. Upstream checks
// `if expected_value:` (Python truthiness) and then `pool_task.get(key) != expected_value`,
// so a falsy filter value (null, false, 0, "", [], {}) filters nothing and a message without
// the key never matches a truthy value.

#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "dispatcherd/control/control_view.h"

namespace dispatcherd {

namespace {

bool truthy(const nlohmann::json& v) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::boolean:
      return v.get<bool>();
    case T::number_integer:
      return v.get<std::int64_t>() != 0;
    case T::number_unsigned:
      return v.get<std::uint64_t>() != 0;
    case T::number_float:
      return v.get<double>() != 0.0;
    case T::string:  // nlohmann's empty() is false for every string, "" included
      return !v.get_ref<const std::string&>().empty();
    case T::array:
    case T::object:
      return !v.empty();
    case T::null:
    case T::binary:
    case T::discarded:
    default:
      return false;
  }
}

}  // namespace

TaskFilter TaskFilter::from(const nlohmann::json& control_data) {
  TaskFilter f;
  if (!control_data.is_object()) return f;
  // One table for the four keys keeps from() and matches() reading the same list.
  const std::array<std::pair<const char*, nlohmann::json*>, 4> keys{
      {{"task", &f.task}, {"args", &f.args}, {"kwargs", &f.kwargs}, {"uuid", &f.uuid}}};
  for (const auto& [key, slot] : keys) {
    auto it = control_data.find(key);
    if (it != control_data.end() && truthy(*it)) *slot = *it;
  }
  return f;
}

bool TaskFilter::matches(const nlohmann::json& message) const {
  const std::array<std::pair<const char*, const nlohmann::json*>, 4> keys{
      {{"task", &task}, {"args", &args}, {"kwargs", &kwargs}, {"uuid", &uuid}}};
  for (const auto& [key, expected] : keys) {
    if (expected->is_null()) continue;
    if (!message.is_object()) return false;
    auto it = message.find(key);
    if (it == message.end() || *it != *expected) return false;
  }
  return true;
}

bool TaskFilter::may_match(std::string_view task_name, std::string_view task_uuid) const {
  // A held message's task and uuid are strings, so only an equal string filter can pass.
  for (const auto& [expected, actual] :
       {std::pair{&task, task_name}, std::pair{&uuid, task_uuid}}) {
    if (expected->is_null()) continue;
    if (!expected->is_string() || expected->get_ref<const std::string&>() != actual) return false;
  }
  return true;
}

}  // namespace dispatcherd
