// The `extensions:` section (DESIGN §7): settings upstream lacks, in a top-level section
// upstream ignores. Command tasks are checked here so a bad template fails at start-up, not
// when the first message for it arrives.

#include <cctype>
#include <limits>
#include <regex>
#include <set>
#include <string>

#include "config_yaml.h"
#include "dispatcherd/log.h"

namespace dispatcherd::config_detail {
namespace {

constexpr std::size_t kMaxPatternBytes = 1000;

bool is_identifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') return false;
  return true;
}

// Collects the `{name}` placeholders of one argv element, str.format style: `{{` and `}}`
// are literal braces. Returns an error message, or an empty string when the element is good.
std::string scan_template(std::string_view s, std::set<std::string>& names) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{') {
      if (i + 1 < s.size() && s[i + 1] == '{') {
        ++i;
        continue;
      }
      std::size_t close = s.find('}', i + 1);
      if (close == std::string_view::npos)
        return "unbalanced '{' at offset " + std::to_string(i) + " (write {{ for a literal brace)";
      std::string_view name = s.substr(i + 1, close - i - 1);
      if (!is_identifier(name))
        return "placeholder '{" + excerpt(name) +
               "}' is not a name (letters, digits and _, not starting with a digit; write {{ "
               "and }} for literal braces)";
      names.emplace(name);
      i = close;
    } else if (s[i] == '}') {
      if (i + 1 < s.size() && s[i + 1] == '}') {
        ++i;
        continue;
      }
      return "unbalanced '}' at offset " + std::to_string(i) + " (write }} for a literal brace)";
    }
  }
  return "";
}

CommandTaskConfig load_command_task(const Ctx& c, const Field& t) {
  if (kind_of(t.value) != Kind::Map)
    c.fail(t, t.path + " must be a mapping with a command, got " + describe(t.value));
  CommandTaskConfig task;
  bool has_command = false;
  std::set<std::string> placeholders;
  std::vector<Field> patterns;
  for (const Field& f :
       c.fields(t.value, t.path, {"command", "cwd", "env", "patterns", "output_tail_bytes"})) {
    if (f.key == "command") {
      task.command = c.get_string_list(f);
      has_command = true;
      if (task.command.empty()) c.fail(f, f.path + " must not be empty");
      if (task.command[0].empty()) c.fail(f.value[0].Mark(), f.path + "[0] must not be empty");
      for (std::size_t i = 0; i < task.command.size(); ++i) {
        std::string where = f.path + "[" + std::to_string(i) + "]";
        // execve takes C strings, so a NUL would silently cut the argument.
        if (task.command[i].find('\0') != std::string::npos)
          c.fail(f.value[i].Mark(), where + " contains a NUL byte");
        std::string err = scan_template(task.command[i], placeholders);
        if (!err.empty()) c.fail(f.value[i].Mark(), where + ": " + err);
      }
    } else if (f.key == "cwd") {
      task.cwd = c.get_opt_string(f);
      if (task.cwd && task.cwd->empty()) c.fail(f, f.path + " must not be empty");
    } else if (f.key == "env") {
      for (const Field& e : c.any_fields(f.value, f.path)) {
        if (e.key.empty() || e.key.find('=') != std::string::npos ||
            e.key.find('\0') != std::string::npos)
          c.fail(e.key_node.Mark(),
                 "invalid environment variable name '" + excerpt(e.key) + "' in " + f.path);
        task.env[e.key] = c.get_scalar_text(e);
        if (task.env[e.key].find('\0') != std::string::npos)
          c.fail(e, e.path + " contains a NUL byte");
      }
    } else if (f.key == "patterns") {
      patterns = c.any_fields(f.value, f.path);
    } else {
      task.output_tail_bytes =
          static_cast<std::size_t>(c.get_int(f, 0, std::numeric_limits<std::int64_t>::max()));
    }
  }
  if (!has_command) c.fail(t, t.path + ": missing required key 'command'");
  // Checked after the loop: patterns may come before the command in the file.
  for (const Field& p : patterns) {
    if (!placeholders.count(p.key))
      c.fail(p.key_node.Mark(), "pattern '" + excerpt(p.key) + "' in " + t.path +
                                    ".patterns names no placeholder of the command");
    std::string re = c.get_string(p);
    // std::regex compiles and matches recursively; a bounded pattern keeps that shallow.
    if (re.size() > kMaxPatternBytes)
      c.fail(p, p.path + " is longer than " + std::to_string(kMaxPatternBytes) + " bytes");
    try {
      std::regex compiled(re, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      c.fail(p, p.path + " is not a valid ECMAScript regular expression: " + e.what());
    }
    task.patterns[p.key] = re;
  }
  return task;
}

unsigned socket_mode(const Ctx& c, const Field& f) {
  const std::string msg = f.path + " must be an octal file mode such as 0600, got ";
  Kind k = kind_of(f.value);
  std::int64_t mode = 0;
  if (k == Kind::String) {
    // Quoted, it is read like chmod reads it: always octal.
    const std::string& s = f.value.Scalar();
    if (s.empty() || s.size() > 5 || s.find_first_not_of("01234567") != std::string::npos)
      c.fail(f, msg + describe(f.value));
    mode = std::stoll(s, nullptr, 8);
  } else if (k == Kind::Int) {
    // Plain 0600 is octal under YAML 1.1 (as PyYAML reads it); plain 600 is decimal.
    mode = c.get_int(f, 0, std::numeric_limits<std::int64_t>::max());
  } else {
    c.fail(f, msg + describe(f.value));
  }
  if (mode > 0777)
    c.fail(f, f.path + " must be at most 0777, got " + f.value.Scalar() +
                  " (a plain 600 is decimal; write 0600)");
  return static_cast<unsigned>(mode);
}

}  // namespace

void load_extensions(const Ctx& c, const YAML::Node& node, ExtensionsConfig& x) {
  struct SizeKey {
    const char* name;
    std::size_t ExtensionsConfig::*member;
    std::int64_t min;  // 0 only where 0 means "never"; a zero bound would refuse everything
  };
  static const SizeKey kSizes[] = {
      {"max_queued_tasks", &ExtensionsConfig::max_queued_tasks, 1},
      {"max_delayed_tasks", &ExtensionsConfig::max_delayed_tasks, 1},
      {"max_blocked_tasks", &ExtensionsConfig::max_blocked_tasks, 1},
      {"max_message_bytes", &ExtensionsConfig::max_message_bytes, 1},
      {"max_partial_messages", &ExtensionsConfig::max_partial_messages, 1},
      {"max_partial_bytes", &ExtensionsConfig::max_partial_bytes, 1},
      {"max_tasks_per_worker", &ExtensionsConfig::max_tasks_per_worker, 0},
      {"max_worker_rss_mb", &ExtensionsConfig::max_worker_rss_mb, 0},
      {"max_socket_clients", &ExtensionsConfig::max_socket_clients, 1},
      {"max_socket_line_bytes", &ExtensionsConfig::max_socket_line_bytes, 1},
  };
  for (const Field& f : c.fields(
           node, "extensions",
           {"task_libraries", "tasks", "cancel_grace_seconds", "shutdown_timeout_seconds",
            "max_queued_tasks", "max_delayed_tasks", "max_blocked_tasks", "max_message_bytes",
            "max_partial_messages", "max_partial_bytes", "max_tasks_per_worker",
            "max_worker_rss_mb", "max_socket_clients", "max_socket_line_bytes", "socket_mode",
            "pg_notify_control_commands", "log_format", "log_level", "schedule_advisory_lock"})) {
    const SizeKey* size = nullptr;
    for (const SizeKey& s : kSizes)
      if (f.key == s.name) size = &s;
    if (size) {
      x.*(size->member) = static_cast<std::size_t>(
          c.get_int(f, size->min, std::numeric_limits<std::int64_t>::max()));
    } else if (f.key == "task_libraries") {
      x.task_libraries = c.get_string_list(f);
      for (std::size_t i = 0; i < x.task_libraries.size(); ++i)
        if (x.task_libraries[i].empty())
          c.fail(f.value[i].Mark(), f.path + "[" + std::to_string(i) + "] must not be empty");
    } else if (f.key == "tasks") {
      for (const Field& t : c.any_fields(f.value, f.path)) {
        if (t.key.empty()) c.fail(t.key_node.Mark(), "empty task name in " + f.path);
        x.tasks[t.key] = load_command_task(c, t);
      }
    } else if (f.key == "cancel_grace_seconds") {
      x.cancel_grace_seconds = c.get_number(f, 0);
    } else if (f.key == "shutdown_timeout_seconds") {
      x.shutdown_timeout_seconds = c.get_number(f, 0);
    } else if (f.key == "socket_mode") {
      x.socket_mode = socket_mode(c, f);
    } else if (f.key == "pg_notify_control_commands") {
      if (kind_of(f.value) == Kind::Null)
        x.pg_notify_control_commands.reset();
      else
        x.pg_notify_control_commands = c.get_string_list(f);
    } else if (f.key == "log_format") {
      x.log_format = c.get_string(f);
      if (x.log_format != "text" && x.log_format != "json")
        c.fail(f, f.path + " must be text or json, got " + describe(f.value));
    } else if (f.key == "log_level") {
      std::string level = c.get_string(f);
      auto parsed = log::parse_level(level);
      if (!parsed)
        c.fail(f, f.path + " must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got " +
                      describe(f.value));
      else
        x.log_level = std::string(log::level_name(*parsed));
    } else {  // schedule_advisory_lock
      x.schedule_advisory_lock = c.get_bool(f);
    }
  }
}

}  // namespace dispatcherd::config_detail
