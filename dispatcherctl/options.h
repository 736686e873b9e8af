#pragma once
// What a dispatcherctl command line asks for, after parsing (cli.cpp) and before running
// (app.cpp). Plain data, so tests can build and inspect it without CLI11.

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dispatcherd/log.h"

namespace dispatcherctl {

/// Options every subcommand takes (upstream-spec §5.2), accepted before or after the
/// subcommand; after wins when both are given.
struct CommonOptions {
  std::string config;  ///< "" = not given: DISPATCHERD_CONFIG_FILE, else dispatcher.yml
  /// Threshold of our own log lines (on stderr). Upstream defaults to DEBUG on stdout; we keep
  /// stdout for the YAML alone and default to WARNING.
  dispatcherd::log::Level log_level = dispatcherd::log::Level::Warning;
  int expected_replies = 1;  ///< 0 = collect until the timeout, never fail for missing replies
  double timeout = 1.0;      ///< total seconds to wait for replies after sending the request
  bool json = false;         ///< print the replies as one JSON array instead of YAML
  std::string socket;        ///< "" = from the config; else talk to this socket, no config read
};

/// A control request to send (one of the control_protocol.h commands).
struct ControlSpec {
  std::string command;
  nlohmann::json data = nlohmann::json::object();  ///< control_data; omitted on the wire if {}
};

/// The `submit` subcommand (ours): publish task messages over pg_notify (§11.1).
struct SubmitOptions {
  std::string task;
  nlohmann::json args;    ///< array, or null when not given
  nlohmann::json kwargs;  ///< object, or null when not given
  std::string queue;      ///< "" = the broker's default channel
  std::string uuid;       ///< "" = a fresh uuid4 per message; with count > 1 the base of U-i
  std::optional<double> delay;
  double timeout = 0;                       ///< task timeout; 0 = none (not sent)
  std::optional<std::string> on_duplicate;  ///< parallel | discard | serial | queue_one
  int count = 1;
};

/// A parsed command line.
struct Invocation {
  CommonOptions common;
  bool submit = false;  ///< true: `submit` (see submit_options); false: `control`
  ControlSpec control;
  SubmitOptions submit_options;
};

/// parse_command_line's answer: an invocation to run, or an exit code (help shown: 0; usage
/// error: 2) with the text already written.
struct ParseResult {
  std::optional<Invocation> invocation;
  int exit_code = 0;
};

/// Parses `args` (without the program name). Help goes to `out`; usage errors go to `err` as
/// "dispatcherctl: error: ..." plus a hint line, with exit code 2 (argparse's, not CLI11's).
/// The subcommands come from dispatcherd::kControlCommands (cli_visible ones), plus `submit`.
ParseResult parse_command_line(const std::vector<std::string>& args, std::ostream& out,
                               std::ostream& err);

}  // namespace dispatcherctl
