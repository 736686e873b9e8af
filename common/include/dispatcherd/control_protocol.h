#pragma once
// The control commands as a list of names, arguments and help (upstream-spec §4.4, §5.2).
// The service's command table (dispatcherd/control/commands.cpp) pairs each entry with its
// handler, and dispatcherctl generates its subcommands from the same list, so the two cannot
// drift apart. Kept free of heavy includes: dispatcherctl links only dispatcherd_common.

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>

namespace dispatcherd {

/// How a command argument is typed on the CLI and in `control_data`.
enum class ControlArgType { String, Int };

/// One `control_data` key a command reads, as a dispatcherctl option `--<name>`.
struct ControlArg {
  std::string_view name;  ///< key in control_data and option name
  ControlArgType type = ControlArgType::String;
  std::string_view help;
  bool required = false;                      ///< the CLI refuses to send without it
  std::span<const std::string_view> choices;  ///< CLI choices (empty = any value)
};

/// One control command: its name on the wire, whether dispatcherctl offers it, a one-line
/// help text and the arguments dispatcherctl can put into control_data.
struct ControlCommandInfo {
  std::string_view name;
  bool cli_visible = true;
  std::string_view help;
  std::span<const ControlArg> args;
};

namespace control_detail {
inline constexpr std::string_view kLevelChoices[] = {"DEBUG", "INFO", "WARNING", "ERROR",
                                                     "CRITICAL"};
inline constexpr ControlArg kFilterArgs[] = {
    {"task", ControlArgType::String, "only tasks with this task name", false, {}},
    {"uuid", ControlArgType::String, "only the task with this uuid", false, {}},
};
inline constexpr ControlArg kAioTasksArgs[] = {
    {"limit", ControlArgType::Int, "stack depth to show (default 6)", false, {}},
};
inline constexpr ControlArg kSetLogLevelArgs[] = {
    {"level", ControlArgType::String, "new level of the dispatcherd logger", true, kLevelChoices},
};
}  // namespace control_detail

/// Every command the service answers, in dispatcherctl's order (§5.2) with `run` last.
/// Anything not listed here is answered with kNoControlMethodPrefix + name.
inline constexpr ControlCommandInfo kControlCommands[] = {
    {"running", true, "List tasks running on workers, blocked, queued and delayed",
     control_detail::kFilterArgs},
    {"cancel", true, "Cancel every matching task (running, blocked, queued or delayed)",
     control_detail::kFilterArgs},
    {"alive", true, "Reply with the node id only (roll call / health check)", {}},
    {"aio_tasks", true, "List the service's loop activities and timers",
     control_detail::kAioTasksArgs},
    {"workers", true, "Show every worker record of the pool", {}},
    {"producers", true, "Show the producers and their counters", {}},
    {"metrics", true, "Show the metrics server status", {}},
    {"main", true, "Show the main process counters", {}},
    {"status",
     true,
     "running, aio_tasks, workers, producers, metrics, main and chunks at once",
     {}},
    {"chunks", true, "Show chunk reassembly counters and partial messages", {}},
    {"set_log_level", true, "Set the log level of the service's dispatcherd logger",
     control_detail::kSetLogLevelArgs},
    {"run", false, "Submit control_data as a task message and acknowledge it", {}},
};

/// The command list (kControlCommands as a span).
std::span<const ControlCommandInfo> control_commands();
/// The entry named `name` (exact, case-sensitive), or nullptr when there is none.
const ControlCommandInfo* find_control_command(std::string_view name);

/// Reply error text for a name not in the table: "No control method " + name.
inline constexpr std::string_view kNoControlMethodPrefix = "No control method ";
/// `run` without a ControlProducer (Appendix A, exact text).
inline constexpr std::string_view kNoControlProducerError =
    "A ControlProducer producer is not enabled. Add it to the list of producers in the "
    "service config to use this.";
/// `set_log_level` with a missing, bool, list, ... level (Appendix A, exact text).
inline constexpr std::string_view kLogLevelTypeError =
    "Log level must be provided as a string or int via the \"level\" key.";
/// The bind path's reply when a worker's control request fails (Appendix A, exact text).
inline constexpr std::string_view kFailedControlTaskError = "Failed to run control task";
/// "Unknown log level '<x>'." for the string `given` exactly as received (Appendix A).
std::string unknown_log_level_error(std::string_view given);

/// Serializes a control reply the way Python's json.dumps does (", " and ": " separators,
/// ASCII-only, floats as Python's repr) keeping the object's insertion order, so `status`
/// keeps its key order and `node_id` stays last. Invalid UTF-8 is replaced, never thrown.
std::string dump_reply(const nlohmann::ordered_json& reply);

}  // namespace dispatcherd
