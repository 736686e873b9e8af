// The scalar rules of PyYAML that yaml_output.cpp relies on: the implicit resolver
// (resolver.py), which decides whether a string may be written plain, and the float
// representer (representer.py).

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>

#include "dispatcherd/message.h"
#include "dispatcherd/pyyaml_resolver.h"
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

namespace {

using dispatcherd::pyyaml::is_float;
using dispatcherd::pyyaml::is_int;
using dispatcherd::pyyaml::is_timestamp;

bool resolves(std::string_view s) {
  // bool, then merge, null, value and yaml: whole words.
  static constexpr std::string_view kWords[] = {
      "yes",   "Yes",   "YES",  "no", "No", "NO",  "true", "True", "TRUE", "false",
      "False", "FALSE", "on",   "On", "ON", "off", "Off",  "OFF",  "<<",   "~",
      "null",  "Null",  "NULL", "",   "=",  "!",   "&",    "*"};
  return std::ranges::find(kWords, s) != std::end(kWords) || is_float(s) || is_int(s) ||
         is_timestamp(s);
}

}  // namespace

bool pyyaml_resolves_to_non_string(std::string_view plain) {
  // Python's `$` also matches just before a final "\n".
  std::string_view trimmed = plain;
  if (trimmed.ends_with('\n')) trimmed.remove_suffix(1);
  return resolves(plain) || resolves(trimmed);
}

}  // namespace dispatcherctl
