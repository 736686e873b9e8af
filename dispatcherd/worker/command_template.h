#pragma once
// Expansion of a command task's argv template (DESIGN §2 "command tasks"): pure string work,
// no processes. Each template element becomes exactly one argv element whatever the values
// contain (spaces, quotes, `;`): there is no word splitting and no shell, so a kwarg can never
// inject an extra argument or a command.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dispatcherd/config.h"
#include "dispatcherd/result.h"

namespace dispatcherd::worker {

/// Longest value a pattern is matched against. libstdc++'s std::regex matches recursively,
/// one stack frame chain per character: an 8 KiB value already overflowed the stack of an
/// ASan build, so longer values of a pattern-checked placeholder are refused instead.
constexpr std::size_t kMaxPatternValueBytes = 1024;

/// The text a kwarg value stands for in argv: a string verbatim, anything else as compact JSON
/// (5 → "5", true → "true", {"a":1} → "{\"a\":1}"; invalid UTF-8 is replaced, never thrown).
std::string kwarg_text(const nlohmann::json& value);

/// Expands `task.command` with `kwargs` (str.format style): `{name}` → kwarg_text(kwargs[name]),
/// `{{` → `{`, `}}` → `}`. Errors (the message names the kwarg):
///   - a placeholder whose kwarg is missing (or `kwargs` is not an object);
///   - a value containing a NUL byte (execve would silently cut it);
///   - a value that `task.patterns[name]` (ECMAScript) does not match as a whole, e.g.
///     "kwarg 'wiki' value 'x y' does not match pattern '^[a-z]+$'", or that is longer than
///     kMaxPatternValueBytes when a pattern applies;
///   - a malformed template or pattern (the config loader already refuses those).
Result<std::vector<std::string>> expand_command(const CommandTaskConfig& task,
                                                const nlohmann::json& kwargs);

}  // namespace dispatcherd::worker
