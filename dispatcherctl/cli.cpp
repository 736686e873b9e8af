// The command line of dispatcherctl, the only translation unit that includes CLI11 (it costs
// about 3 s to compile). Subcommands and their options come from the shared control command
// list (control_protocol.h), so a command added to the service shows up here by itself.
//
// Common options exist twice, on the app (before the subcommand) and on every subcommand
// (after it), each with its own storage: upstream's argparse silently lets the subcommand's
// defaults overwrite options given before it (quirk #7); here both positions work and the
// one after the subcommand wins.

#include <CLI/CLI.hpp>
#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "dispatcherd/control_protocol.h"
#include "dispatcherd/message.h"
#include "options.h"

namespace dispatcherctl {
namespace {

using nlohmann::json;

const std::vector<std::string> kLevelNames = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

// One position's worth of common options, with "was it given" read from CLI11 afterwards.
struct CommonSlot {
  std::string config, log_level, socket;
  int expected_replies = 1;
  double timeout = 1.0;
  bool json = false;
  CLI::Option* config_opt = nullptr;
  CLI::Option* log_level_opt = nullptr;
  CLI::Option* expected_opt = nullptr;
  CLI::Option* timeout_opt = nullptr;
  CLI::Option* json_opt = nullptr;
  CLI::Option* socket_opt = nullptr;
};

std::string positive_seconds(const std::string& text) {
  try {
    std::size_t used = 0;
    double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v) && v > 0) return {};
  } catch (const std::exception&) {
  }
  return "must be a number of seconds > 0, got '" + text + "'";
}

// `control_only`: the options that only mean something for control requests.
void add_common(CLI::App* app, CommonSlot& s, bool control_only) {
  s.config_opt = app->add_option("--config", s.config,
                                 "config file (default: $DISPATCHERD_CONFIG_FILE, else "
                                 "dispatcher.yml)");
  s.log_level_opt = app->add_option("--log-level", s.log_level,
                                    "level of dispatcherctl's own log lines on stderr "
                                    "(default WARNING)")
                        ->check(CLI::IsMember(kLevelNames));
  if (!control_only) return;
  s.expected_opt = app->add_option("--expected-replies", s.expected_replies,
                                   "replies to wait for (default 1; 0 = all that arrive "
                                   "before the timeout)")
                       ->check(CLI::Range(0, 1000000));
  s.timeout_opt = app->add_option("--timeout", s.timeout,
                                  "seconds to wait for replies after sending (default 1.0)")
                      ->check(positive_seconds);
  s.json_opt = app->add_flag("--json", s.json, "print the replies as a JSON array, not YAML");
  s.socket_opt = app->add_option("--socket", s.socket,
                                 "talk to the service's control socket at this path; the "
                                 "config file is not read");
}

bool given(const CLI::Option* o) {
  return o != nullptr && o->count() > 0;
}

// The value given after the subcommand, else before it, else the default.
template <class T>
void merge(T& target, const T& before, const CLI::Option* before_opt, const T& after,
           const CLI::Option* after_opt) {
  if (given(after_opt))
    target = after;
  else if (given(before_opt))
    target = before;
}

void merge_common(CommonOptions& c, const CommonSlot& top, const CommonSlot& sub) {
  merge(c.config, top.config, top.config_opt, sub.config, sub.config_opt);
  std::string level;
  merge(level, top.log_level, top.log_level_opt, sub.log_level, sub.log_level_opt);
  if (auto l = dispatcherd::log::parse_level(level)) c.log_level = *l;
  merge(c.expected_replies, top.expected_replies, top.expected_opt, sub.expected_replies,
        sub.expected_opt);
  merge(c.timeout, top.timeout, top.timeout_opt, sub.timeout, sub.timeout_opt);
  merge(c.json, top.json, top.json_opt, sub.json, sub.json_opt);
  merge(c.socket, top.socket, top.socket_opt, sub.socket, sub.socket_opt);
}

// Storage for one control subcommand's own arguments.
struct CommandSlot {
  const dispatcherd::ControlCommandInfo* info = nullptr;
  CLI::App* app = nullptr;
  CommonSlot common;
  std::vector<std::string> strings;  // one per info->args entry
  std::vector<long long> ints;
  std::vector<CLI::Option*> opts;
  std::string args_json, kwargs_json;  // task filter extras (ours)
  CLI::Option* args_opt = nullptr;
  CLI::Option* kwargs_opt = nullptr;
};

struct SubmitSlot {
  CLI::App* app = nullptr;
  CommonSlot common;
  SubmitOptions o;
  std::string args_json, kwargs_json, on_duplicate;
  double delay = 0;
  CLI::Option* args_opt = nullptr;
  CLI::Option* kwargs_opt = nullptr;
  CLI::Option* delay_opt = nullptr;
  CLI::Option* on_duplicate_opt = nullptr;
};

// A JSON option value of the wanted kind; the error reads like CLI11's own.
json parse_json_option(const std::string& name, const std::string& text, bool want_array) {
  auto parsed = dispatcherd::parse_json(text);
  const char* kind = want_array ? "array" : "object";
  if (!parsed.ok() || (want_array ? !parsed->is_array() : !parsed->is_object()))
    throw CLI::ValidationError(name,
                               "must be a JSON " + std::string(kind) + ", got '" + text + "'");
  return std::move(parsed).value();
}

bool is_task_filter(const dispatcherd::ControlCommandInfo& info) {
  for (const auto& a : info.args)
    if (a.name == "task") return true;
  return false;
}

// Fills `inv` from the parsed slots; throws CLI::ValidationError for cross-option problems.
void collect(Invocation& inv, const CommonSlot& top, std::vector<CommandSlot>& commands,
             SubmitSlot& submit) {
  if (*submit.app) {
    // The control-only options exist before the subcommand too; they mean nothing here.
    for (const CLI::Option* o : {top.expected_opt, top.timeout_opt, top.json_opt, top.socket_opt})
      if (given(o))
        throw CLI::ValidationError(o->get_name(),
                                   "does not apply to submit (for a task "
                                   "timeout, put --timeout after 'submit')");
    inv.submit = true;
    merge_common(inv.common, top, submit.common);
    SubmitOptions& o = inv.submit_options;
    o = submit.o;
    if (given(submit.args_opt)) o.args = parse_json_option("--args", submit.args_json, true);
    if (given(submit.kwargs_opt))
      o.kwargs = parse_json_option("--kwargs", submit.kwargs_json, false);
    if (given(submit.delay_opt)) o.delay = submit.delay;
    if (given(submit.on_duplicate_opt)) o.on_duplicate = submit.on_duplicate;
    return;
  }
  for (CommandSlot& c : commands) {
    if (!*c.app) continue;
    merge_common(inv.common, top, c.common);
    inv.control.command = std::string(c.info->name);
    json& data = inv.control.data;
    for (std::size_t i = 0; i < c.info->args.size(); ++i) {
      if (!given(c.opts[i])) continue;  // upstream: only options that are not None
      const auto& arg = c.info->args[i];
      std::string key(arg.name);
      if (arg.type == dispatcherd::ControlArgType::Int)
        data[key] = c.ints[i];
      else
        data[key] = c.strings[i];
    }
    if (given(c.args_opt)) data["args"] = parse_json_option("--args", c.args_json, true);
    if (given(c.kwargs_opt)) data["kwargs"] = parse_json_option("--kwargs", c.kwargs_json, false);
  }
}

}  // namespace

ParseResult parse_command_line(const std::vector<std::string>& args, std::ostream& out,
                               std::ostream& err) {
  CLI::App app{"dispatcherctl - query and control running dispatcherd services"};
  app.name("dispatcherctl");
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "dispatcherctl: error: " + std::string(e.what()) +
           "\nRun 'dispatcherctl --help' for the commands and options.\n";
  });
  CommonSlot top;
  add_common(&app, top, /*control_only=*/true);

  std::vector<CommandSlot> commands;
  commands.reserve(std::size(dispatcherd::kControlCommands));
  for (const auto& info : dispatcherd::kControlCommands) {
    if (!info.cli_visible) continue;
    CommandSlot& c = commands.emplace_back();
    c.info = &info;
    c.app = app.add_subcommand(std::string(info.name), std::string(info.help));
    add_common(c.app, c.common, true);
    c.strings.resize(info.args.size());
    c.ints.resize(info.args.size());
    for (std::size_t i = 0; i < info.args.size(); ++i) {
      const auto& arg = info.args[i];
      const std::string flag = "--" + std::string(arg.name);
      CLI::Option* o = arg.type == dispatcherd::ControlArgType::Int
                           ? c.app->add_option(flag, c.ints[i], std::string(arg.help))
                           : c.app->add_option(flag, c.strings[i], std::string(arg.help));
      if (!arg.choices.empty())
        o->check(CLI::IsMember(std::vector<std::string>(arg.choices.begin(), arg.choices.end())));
      if (arg.required) o->required();
      c.opts.push_back(o);
    }
    if (is_task_filter(info)) {
      c.args_opt =
          c.app->add_option("--args", c.args_json, "only tasks whose args equal this JSON array");
      c.kwargs_opt = c.app->add_option("--kwargs", c.kwargs_json,
                                       "only tasks whose kwargs equal this JSON object");
    }
  }

  SubmitSlot submit;
  submit.app = app.add_subcommand("submit", "Publish task messages over pg_notify (no reply)");
  add_common(submit.app, submit.common, /*control_only=*/false);
  CLI::App* s = submit.app;
  s->add_option("task", submit.o.task, "task name")->required();
  submit.args_opt = s->add_option("--args", submit.args_json, "positional arguments, a JSON array");
  submit.kwargs_opt =
      s->add_option("--kwargs", submit.kwargs_json, "keyword arguments, a JSON object");
  s->add_option("--queue", submit.o.queue, "channel (default: the broker's default channel)");
  s->add_option("--uuid", submit.o.uuid, "message uuid (with --count N: UUID-0 .. UUID-N-1)");
  submit.delay_opt = s->add_option("--delay", submit.delay, "seconds to wait before running")
                         ->check(CLI::Range(0.0, 1e9));
  s->add_option("--timeout", submit.o.timeout, "task timeout in seconds (0 = none)")
      ->check(CLI::Range(0.0, 1e9));
  submit.on_duplicate_opt =
      s->add_option("--on-duplicate", submit.on_duplicate, "what to do while an equal task runs")
          ->check(CLI::IsMember({"parallel", "discard", "serial", "queue_one"}));
  s->add_option("--count", submit.o.count, "messages to publish (default 1)")
      ->check(CLI::Range(1, 100000000));

  std::vector<std::string> argv_store;
  argv_store.reserve(args.size() + 1);
  argv_store.emplace_back("dispatcherctl");
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<const char*> argv;
  for (const std::string& a : argv_store) argv.push_back(a.c_str());

  ParseResult result;
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
    Invocation inv;
    collect(inv, top, commands, submit);
    result.invocation = std::move(inv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    // argparse's codes: 0 for help, 2 for any usage error (CLI11 would use 105, 106, ...).
    result.exit_code = code == 0 ? 0 : 2;
  }
  return result;
}

}  // namespace dispatcherctl
