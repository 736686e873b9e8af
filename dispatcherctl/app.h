#pragma once
// Running a parsed dispatcherctl command line: logging setup, config, broker choice, the
// round trip, the printed replies and the exit code (upstream-spec §5.2).

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "options.h"

namespace dispatcherctl {

/// The replies as printed on stdout: PyYAML block YAML followed by the blank line upstream's
/// print() adds ("[]" when none), or with `as_json` one JSON array in json.dumps style.
std::string format_replies(const std::vector<nlohmann::json>& replies, bool as_json);

/// Runs `inv`, printing replies to `out` and one-line errors ("dispatcherctl: ...") to `err`;
/// log lines go to stderr. Returns the exit code: 0 when at least the expected number of
/// replies arrived (or `submit` succeeded), else 1.
int run_invocation(const Invocation& inv, std::ostream& out, std::ostream& err);

}  // namespace dispatcherctl
