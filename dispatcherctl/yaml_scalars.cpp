// The scalar rules of PyYAML that yaml_output.cpp relies on: the implicit resolver
// (resolver.py), which decides whether a string may be written plain, and the float
// representer (representer.py).

#include <cmath>
#include <regex>
#include <string>

#include "dispatcherd/message.h"
#include "yaml_output.h"

namespace dispatcherctl {

using nlohmann::json;
std::string pyyaml_float(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  // dump_python writes float.__repr__; PyYAML lower-cases it (already lower here) and turns
  // a bare exponent "1e+16" into "1.0e+16" so that it resolves as a float again.
  std::string value = dispatcherd::dump_python(json(d));
  if (value.find('.') == std::string::npos) {
    if (auto e = value.find('e'); e != std::string::npos) value.insert(e, ".0");
  }
  return value;
}

bool pyyaml_resolves_to_non_string(std::string_view plain) {
  // Resolver.add_implicit_resolver patterns of resolver.py, re.X whitespace removed. Each
  // only applies to values starting with one of its listed first characters, which are
  // exactly the characters its pattern can start with, so trying them all is equivalent.
  static const std::regex kPatterns[] = {
      std::regex("^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE"
                 "|on|On|ON|off|Off|OFF)$"),
      std::regex("^(?:[-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+][0-9]+)?"
                 "|\\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
                 "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*"
                 "|[-+]?\\.(?:inf|Inf|INF)"
                 "|\\.(?:nan|NaN|NAN))$"),
      std::regex("^(?:[-+]?0b[0-1_]+"
                 "|[-+]?0[0-7_]+"
                 "|[-+]?(?:0|[1-9][0-9_]*)"
                 "|[-+]?0x[0-9a-fA-F_]+"
                 "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"),
      std::regex("^(?:<<)$"),
      std::regex("^(?:~|null|Null|NULL|)$"),
      std::regex("^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
                 "|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
                 "(?:[Tt]|[ \\t]+)[0-9][0-9]?"
                 ":[0-9][0-9]:[0-9][0-9](?:\\.[0-9]*)?"
                 "(?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"),
      std::regex("^(?:=)$"),
      std::regex("^(?:!|&|\\*)$"),
  };
  if (!plain.empty() &&
      std::string_view("yYnNtTfFoO-+0123456789.<~=!&*").find(plain[0]) == std::string_view::npos)
    return false;
  // Python's `$` also matches just before a final "\n".
  std::string_view trimmed = plain;
  if (trimmed.ends_with('\n')) trimmed.remove_suffix(1);
  for (const std::regex& re : kPatterns) {
    if (std::regex_match(plain.begin(), plain.end(), re) ||
        std::regex_match(trimmed.begin(), trimmed.end(), re))
      return true;
  }
  return false;
}

}  // namespace dispatcherctl
