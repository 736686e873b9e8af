#include "dispatcherd/worker/command_template.h"

#include <map>
#include <regex>
#include <string_view>

namespace dispatcherd::worker {
namespace {

using nlohmann::json;

// Values quoted in error messages are cut: a message line must stay readable when someone
// sends a megabyte kwarg.
constexpr std::size_t kMaxQuotedBytes = 200;

// Appends instead of chaining operator+: GCC 12 at -O3 reports a false -Wrestrict overlap
// for `"'" + std::string(...)`.
std::string quote_excerpt(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, kMaxQuotedBytes));
  if (s.size() <= kMaxQuotedBytes) return out += '\'';
  out += "...' (";
  out += std::to_string(s.size());
  out += " bytes)";
  return out;
}

// Checks `value` against the placeholder's pattern, if it has one; returns an error message
// or "" when the value is acceptable. `cache` keeps each pattern compiled once per expansion.
std::string check_pattern(const CommandTaskConfig& task, const std::string& name,
                          const std::string& value, std::map<std::string, std::regex>& cache) {
  auto p = task.patterns.find(name);
  if (p == task.patterns.end()) return "";
  if (value.size() > kMaxPatternValueBytes)
    return "kwarg '" + name + "' value is " + std::to_string(value.size()) +
           " bytes, longer than the " + std::to_string(kMaxPatternValueBytes) +
           " bytes a pattern is checked against";
  try {
    auto it = cache.find(name);
    if (it == cache.end())
      it = cache.emplace(name, std::regex(p->second, std::regex::ECMAScript)).first;
    if (std::regex_match(value, it->second)) return "";
  } catch (const std::regex_error& e) {
    // error_complexity / error_stack from the matcher, or a pattern the loader did not see.
    return "kwarg '" + name + "' could not be checked against pattern '" + p->second +
           "': " + e.what();
  }
  return "kwarg '" + name + "' value " + quote_excerpt(value) + " does not match pattern '" +
         p->second + "'";
}

}  // namespace

std::string kwarg_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::vector<std::string>> expand_command(const CommandTaskConfig& task, const json& kwargs) {
  std::vector<std::string> argv;
  argv.reserve(task.command.size());
  std::map<std::string, std::regex> compiled;
  for (std::size_t e = 0; e < task.command.size(); ++e) {
    const std::string& in = task.command[e];
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
      const char ch = in[i];
      if ((ch == '{' || ch == '}') && i + 1 < in.size() && in[i + 1] == ch) {
        out += ch;  // `{{` / `}}`: one literal brace
        ++i;
        continue;
      }
      if (ch == '}')
        return Error{"command[" + std::to_string(e) + "]: unbalanced '}' (write }} for a brace)"};
      if (ch != '{') {
        out += ch;
        continue;
      }
      const std::size_t close = in.find('}', i + 1);
      if (close == std::string::npos)
        return Error{"command[" + std::to_string(e) + "]: unbalanced '{' (write {{ for a brace)"};
      const std::string name = in.substr(i + 1, close - i - 1);
      i = close;
      const json* value = nullptr;
      if (kwargs.is_object()) {
        auto it = kwargs.find(name);
        if (it != kwargs.end()) value = &*it;
      }
      if (value == nullptr)
        return Error{"missing kwarg '" + name + "' for placeholder {" + name + "} of the command"};
      std::string text = kwarg_text(*value);
      if (text.find('\0') != std::string::npos)
        return Error{"kwarg '" + name + "' contains a NUL byte, which cannot be passed in argv"};
      if (std::string err = check_pattern(task, name, text, compiled); !err.empty())
        return Error{std::move(err)};
      out += text;
    }
    argv.push_back(std::move(out));
  }
  if (argv.empty() || argv[0].empty()) return Error{"the command expands to no program name"};
  return argv;
}

}  // namespace dispatcherd::worker
