#pragma once
// PyYAML's implicit resolvers (yaml/resolver.py, YAML 1.1): which plain scalars PyYAML reads
// as a bool, an int, a float or a timestamp. The config loader uses them to type plain
// scalars as upstream reads the same file; dispatcherctl to decide which strings it must
// quote so that PyYAML reads its output back as strings.

#include <string_view>

namespace dispatcherd::pyyaml {

/// yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
bool is_bool(std::string_view s);
/// The int resolver: binary, octal, decimal, hex and sexagesimal, `_` separators allowed.
bool is_int(std::string_view s);
/// The float resolver: decimal with a point, exponent only after a point, sexagesimal, .inf,
/// .nan.
bool is_float(std::string_view s);
/// The timestamp resolver: a date, or a date and time with an optional zone.
bool is_timestamp(std::string_view s);

}  // namespace dispatcherd::pyyaml
