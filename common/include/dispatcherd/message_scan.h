#pragma once
// The main process's fast path for task messages: one pass over the text that validates it,
// reads the fields main acts on and computes the identity hash, without building a JSON tree
// (which cost half of main's instructions per task). Anything out of the ordinary is left to
// decode_payload() and read_task_fields(), which also word the errors.

#include <cstdint>
#include <optional>
#include <string_view>

#include "dispatcherd/message.h"

namespace dispatcherd {

/// Deepest nesting scan_task_message() walks; deeper messages take the parsed path.
constexpr int kScanMaxDepth = 64;

/// What scan_task_message() read from a task message.
struct ScannedTask {
  TaskFields fields;           ///< as read_task_fields() would return them
  std::uint64_t identity = 0;  ///< as identity_hash() would return it
  /// The message has non-null `callbacks` or `errbacks`, or a `self_check` key: a worker
  /// needs the parsed object for those.
  bool needs_tree = false;
};

/// Reads a well-formed task message straight from its text. Returns nullopt, and the caller
/// takes the parsed path, for everything else: text that is not a JSON object or not valid
/// JSON (with nlohmann's rules: strict grammar, valid UTF-8, paired surrogate escapes, numbers
/// within a double's range), a control request or chunk, a field read_task_fields() would
/// refuse, a field given twice, an escape in a key, an object inside args/kwargs with more
/// than 32 members, nesting deeper than kScanMaxDepth. When it returns a value, that value
/// equals what decode_payload(), read_task_fields() and identity_hash() give for `text`.
std::optional<ScannedTask> scan_task_message(std::string_view text);

}  // namespace dispatcherd
