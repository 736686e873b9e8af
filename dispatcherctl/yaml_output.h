#pragma once
// Block YAML exactly as upstream's dispatcherctl prints its replies (upstream-spec §5.2):
// PyYAML's `yaml.dump(value, default_flow_style=False, sort_keys=True)`.
//
// yaml-cpp's emitter differs from PyYAML in many small ways (null spelling, empty
// containers, quoting of strings that re-parse as other types, float text, line folding at
// 80 columns, "\xE9" escapes), so this is a direct port of the parts of PyYAML's Emitter and
// Resolver that JSON values can reach. tests/golden/yaml holds pairs produced by PyYAML 6.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace dispatcherctl {

/// The text `yaml.dump(value, default_flow_style=False, sort_keys=True)` returns for the
/// value Python's json.loads would make of `value`'s JSON (keys sorted by code point, which
/// nlohmann's byte order equals for UTF-8). Ends with a newline. Invalid UTF-8 in strings is
/// read as U+FFFD.
/// Known gap: integers beyond 64 bits (nlohmann holds them as doubles, Python as ints).
std::string to_pyyaml(const nlohmann::json& value);

/// PyYAML's text for a float: repr() lower-cased, ".0" added before a bare exponent
/// ("1.0e+16"), and .nan / .inf / -.inf.
std::string pyyaml_float(double d);

/// True when PyYAML's resolver would read `plain` (unquoted) as something other than a
/// string: null, bool (yes/no/on/off too), int (0x, 0o-style 017, 1_000, 1:30), float,
/// timestamp, merge `<<`, value `=`. Such strings must be quoted.
bool pyyaml_resolves_to_non_string(std::string_view plain);

}  // namespace dispatcherctl
