#pragma once
// The control command table (upstream-spec §4.3-§4.4), pgbouncer admin.c style: one static
// array pairs every entry of kControlCommands (common/control_protocol.h) with its handler,
// and run_control_command() is the one dispatcher. Pure logic over a ControlView: no fd, no
// clock, no state of its own, so every command is unit-tested with a fake view.

#include <nlohmann/json.hpp>
#include <string>

#include "dispatcherd/control/control_view.h"

namespace dispatcherd {

/// Runs control command `name` with `data` against `view`; always returns an object (an error
/// object for unknown commands or bad control_data). Does not add node_id.
/// `data` null means {} (control_data absent). The reply keeps insertion order (ordered_json):
/// serialize it with dump_reply() (control_protocol.h), not through nlohmann::json, which
/// would sort `status`'s keys. Nothing throws out of it: a failing view call becomes
/// {"error": "..."} and is logged.
nlohmann::ordered_json run_control_command(ControlView& view, const std::string& name,
                                           const nlohmann::json& data);

/// Python logging's name for `level`: DEBUG, INFO, WARNING, ERROR, CRITICAL, NOTSET (0), or
/// "Level <n>" for any other number (§4.4 set_log_level).
std::string python_level_name(int level);

}  // namespace dispatcherd
