#include "dispatcherd/control/commands.h"

#include <climits>
#include <exception>
#include <optional>
#include <string_view>

#include "dispatcherd/control_protocol.h"
#include "dispatcherd/log.h"

namespace dispatcherd {

namespace {

using ojson = nlohmann::ordered_json;
using Handler = ojson (*)(ControlView& view, const nlohmann::json& data);

/// aio_tasks' default stack depth (§4.4).
constexpr int kDefaultStackLimit = 6;
/// Larger limits are clamped: a stack description never needs more, and the view may size
/// buffers by it.
constexpr int kMaxStackLimit = 1000;

ojson error_reply(std::string text) {
  ojson out = ojson::object();
  out["error"] = std::move(text);
  return out;
}

std::string type_name(const nlohmann::json& v) {
  // Python's names, since users compare the text with upstream's docs.
  switch (v.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::boolean:
      return "bool";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "int";
    case nlohmann::json::value_t::number_float:
      return "float";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::object:
      return "object";
    default:
      return "unknown";
  }
}

/// Lists messages under their keys, in the order the view gives them.
ojson listing(const std::vector<ListedMessage>& messages) {
  ojson out = ojson::object();
  // The keys are distinct by construction: append to ordered_map's vector directly, since
  // its operator[] searches the keys linearly (a 100k-task listing took 9 s of main's CPU).
  auto& items = static_cast<std::vector<std::pair<const std::string, ojson>>&>(
      out.get_ref<ojson::object_t&>());
  items.reserve(messages.size());
  for (const auto& [key, message] : messages) items.emplace_back(key, ojson(message));
  return out;
}

ojson as_object(const nlohmann::json& body) {
  return body.is_object() ? ojson(body) : ojson::object();
}

// ---- handlers, one per table row -------------------------------------------------------

ojson cmd_running(ControlView& view, const nlohmann::json& data) {
  TaskFilter filter = TaskFilter::from(data);
  std::vector<ListedMessage> all = view.messages();
  std::vector<ListedMessage> hits;
  for (auto& m : all)
    if (filter.matches(m.second)) hits.push_back(std::move(m));
  return listing(hits);
}

ojson cmd_cancel(ControlView& view, const nlohmann::json& data) {
  // The view removes every match in one pass over a snapshot (quirk #4 fixed there); the
  // reply lists exactly what it reports, keyed by position before removal.
  return listing(view.cancel(TaskFilter::from(data)));
}

ojson cmd_alive(ControlView&, const nlohmann::json&) {
  return ojson::object();
}
ojson cmd_workers(ControlView& view, const nlohmann::json&) {
  return as_object(view.workers());
}
ojson cmd_producers(ControlView& view, const nlohmann::json&) {
  return as_object(view.producers());
}
ojson cmd_metrics(ControlView& view, const nlohmann::json&) {
  return as_object(view.metrics());
}
ojson cmd_main(ControlView& view, const nlohmann::json&) {
  return as_object(view.main_status());
}
ojson cmd_chunks(ControlView& view, const nlohmann::json&) {
  return as_object(view.chunks());
}

ojson cmd_aio_tasks(ControlView& view, const nlohmann::json& data) {
  int limit = kDefaultStackLimit;
  auto it = data.find("limit");
  if (it != data.end() && !it->is_null()) {
    if (!it->is_number_integer())
      return error_reply("'limit' must be an integer, got " + type_name(*it));
    if (it->is_number_unsigned()) {
      limit = it->get<std::uint64_t>() > kMaxStackLimit
                  ? kMaxStackLimit
                  : static_cast<int>(it->get<std::uint64_t>());
    } else {
      std::int64_t v = it->get<std::int64_t>();
      if (v < 0) return error_reply("'limit' must be 0 or more, got " + std::to_string(v));
      limit = v > kMaxStackLimit ? kMaxStackLimit : static_cast<int>(v);
    }
  }
  ojson out = as_object(view.activities(limit));
  // Upstream's tests look for this activity (§4.4); our pool reads worker results on the
  // loop, so the entry always exists even if the view forgot to describe it.
  if (!out.contains("results_task")) {
    ojson entry = ojson::object();
    entry["done"] = false;
    entry["stack"] = limit == 0 ? std::string("No stack for results_task")
                                : std::string("worker result reader on the event loop");
    out["results_task"] = std::move(entry);
  }
  return out;
}

ojson cmd_status(ControlView& view, const nlohmann::json&) {
  // Exactly these, in this order (§4.4); never the commands with effects.
  const nlohmann::json empty = nlohmann::json::object();
  ojson out = ojson::object();
  out["running"] = cmd_running(view, empty);
  out["aio_tasks"] = cmd_aio_tasks(view, empty);
  out["workers"] = cmd_workers(view, empty);
  out["producers"] = cmd_producers(view, empty);
  out["metrics"] = cmd_metrics(view, empty);
  out["main"] = cmd_main(view, empty);
  out["chunks"] = cmd_chunks(view, empty);
  return out;
}

/// Python logging's numbers for the names set_log_level accepts (logging._nameToLevel).
std::optional<int> level_from_name(std::string_view name) {
  std::string up;
  for (char c : name) up += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
  if (up == "NOTSET") return 0;
  if (auto l = log::parse_level(up)) return static_cast<int>(*l);
  return std::nullopt;
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

ojson cmd_set_log_level(ControlView& view, const nlohmann::json& data) {
  auto it = data.find("level");
  int level = 0;
  // Python's isinstance(level, int) is true for bool, so upstream rejects bool explicitly;
  // nlohmann keeps bools apart from numbers already.
  if (it == data.end() || !(it->is_string() || it->is_number_integer()))
    return error_reply(std::string(kLogLevelTypeError));
  if (it->is_string()) {
    const std::string& given = it->get_ref<const std::string&>();
    auto parsed = level_from_name(trim(given));
    if (!parsed) return error_reply(unknown_log_level_error(given));
    level = *parsed;
  } else if (it->is_number_unsigned()) {
    if (it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT_MAX))
      return error_reply(std::string(kLogLevelTypeError));
    level = static_cast<int>(it->get<std::uint64_t>());
  } else {
    std::int64_t v = it->get<std::int64_t>();
    if (v < INT_MIN || v > INT_MAX) return error_reply(std::string(kLogLevelTypeError));
    level = static_cast<int>(v);
  }
  log::Level previous = view.set_log_level(static_cast<log::Level>(level));
  ojson out = ojson::object();
  out["logger"] = "dispatcherd";
  out["level"] = python_level_name(level);
  out["previous_level"] = python_level_name(static_cast<int>(previous));
  return out;
}

ojson cmd_run(ControlView& view, const nlohmann::json& data) {
  Status submitted = view.submit(data);
  if (!submitted) return error_reply(submitted.error().message);
  ojson out = ojson::object();
  out["ack"] = ojson(data);
  return out;
}

// ---- the table -------------------------------------------------------------------------

struct CommandEntry {
  std::string_view name;
  Handler handler;
};

/// Same order as kControlCommands (checked at compile time below), so the common list's
/// index finds the handler.
constexpr CommandEntry kHandlers[] = {
    {"running", cmd_running},
    {"cancel", cmd_cancel},
    {"alive", cmd_alive},
    {"aio_tasks", cmd_aio_tasks},
    {"workers", cmd_workers},
    {"producers", cmd_producers},
    {"metrics", cmd_metrics},
    {"main", cmd_main},
    {"status", cmd_status},
    {"chunks", cmd_chunks},
    {"set_log_level", cmd_set_log_level},
    {"run", cmd_run},
};

constexpr bool handlers_match_protocol() {
  if (std::size(kHandlers) != std::size(kControlCommands)) return false;
  for (std::size_t i = 0; i < std::size(kHandlers); ++i)
    if (kHandlers[i].name != kControlCommands[i].name || kHandlers[i].handler == nullptr)
      return false;
  return true;
}
static_assert(handlers_match_protocol(),
              "kHandlers must list exactly the commands of kControlCommands, in its order");

Handler find_handler(std::string_view name) {
  for (const CommandEntry& e : kHandlers)
    if (e.name == name) return e.handler;
  return nullptr;
}

}  // namespace

std::string python_level_name(int level) {
  switch (level) {
    case 0:
      return "NOTSET";
    case 10:
      return "DEBUG";
    case 20:
      return "INFO";
    case 30:
      return "WARNING";
    case 40:
      return "ERROR";
    case 50:
      return "CRITICAL";
    default:
      return "Level " + std::to_string(level);
  }
}

nlohmann::ordered_json run_control_command(ControlView& view, const std::string& name,
                                           const nlohmann::json& data) {
  // Only table names are commands: upstream's module-attribute lookup (quirk #6) and names
  // starting with "_" all get the same answer.
  Handler handler = find_handler(name);
  if (handler == nullptr) return error_reply(std::string(kNoControlMethodPrefix) + name);
  if (!data.is_null() && !data.is_object())
    return error_reply("control_data must be an object, got " + type_name(data));
  static const nlohmann::json kNoArgs = nlohmann::json::object();
  const nlohmann::json& args = data.is_null() ? kNoArgs : data;
  // The edge: a view (or nlohmann) that throws must not unwind into the event loop.
  try {
    return handler(view, args);
  } catch (const std::exception& e) {
    LOG_ERROR("control command " << name << " failed: " << e.what());
    return error_reply("control command " + name + " failed: " + e.what());
  } catch (...) {
    LOG_ERROR("control command " << name << " failed with an unknown exception");
    return error_reply("control command " + name + " failed");
  }
}

}  // namespace dispatcherd
