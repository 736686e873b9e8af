#pragma once
// Task and control messages (upstream-spec §2.1-§2.3, §4.1): decoding a payload, reading the
// fields the service acts on, and encoding messages the way upstream's publishers do.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "dispatcherd/result.h"

namespace dispatcherd {

using json = nlohmann::json;

/// The `on_duplicate` policy of a task (§8.1).
enum class OnDuplicate { Parallel, Discard, Serial, QueueOne };

/// Name of a policy as on the wire ("parallel", ...).
std::string_view on_duplicate_name(OnDuplicate d);
/// The policy named `name` on the wire; nullopt for a name that is none of them.
std::optional<OnDuplicate> on_duplicate_from_name(std::string_view name);

/// Deepest array/object nesting accepted in JSON text. Deeper documents are refused before
/// parsing, because dump(), == and our hash recurse and would overflow the stack.
constexpr std::size_t kMaxJsonDepth = 256;

/// Parses JSON text without throwing. Errors: not JSON (incl. number overflow such as `1e999`
/// and a leading UTF-8 BOM, which Python refuses), or nesting deeper than kMaxJsonDepth.
Result<json> parse_json(std::string_view text);

/// Decodes one broker payload (§2.1): a JSON object is returned as is; text that is not JSON
/// becomes the bare task `{"task": payload}`; valid JSON that is not an object is an Error
/// (the caller logs and drops it), and so is valid JSON nested deeper than kMaxJsonDepth.
/// Invalid UTF-8 in a bare task is replaced with U+FFFD, never thrown.
/// Known gaps against Python's json.loads, all of which become bare tasks here: the literals
/// NaN/Infinity, numbers that overflow a double, and lone surrogate escapes like "\ud800".
Result<json> decode_payload(std::string_view payload);

/// True when `obj` is a chunk envelope (has the `__dispatcherd_chunk__` key).
bool is_chunk(const json& obj);

/// True when `obj` is a control request (has the `control` key).
bool is_control(const json& obj);

/// The fields of a task message the main process acts on, checked for type (§2.2).
/// The message object itself stays the source of truth; this is a typed view of it.
struct TaskFields {
  std::string task;
  std::optional<std::string> uuid;  ///< absent when the message has none
  double timeout = 0;               ///< 0 = none
  double delay = 0;                 ///< 0 = none
  OnDuplicate on_duplicate = OnDuplicate::Parallel;
  bool on_duplicate_unknown = false;  ///< an unknown value was given (treated as parallel)
};

/// Reads and type-checks the task fields: `task` must be a non-empty string; `uuid` a string;
/// `args` an array; `kwargs` an object; `timeout` and `delay` finite numbers ≥ 0 (bools are
/// not numbers); `on_duplicate` a string; `callbacks`/`errbacks` arrays. The error names the
/// offending field, e.g. "field 'args' must be an array, got string".
/// null is read as absent for `uuid`, `timeout`, `delay`, `on_duplicate`, `callbacks` and
/// `errbacks`; a null `args`/`kwargs` is an error (the worker could not call with it).
Result<TaskFields> read_task_fields(const json& obj);

/// The fields of a control request (§4.1).
struct ControlFields {
  std::string command;
  json data = json::object();  ///< `control_data`, {} when absent
  std::string reply_to;        ///< "" = no reply wanted
  double delay = 0;
};

/// Reads and type-checks a control request: `control` a string, `control_data` an object
/// (or null/absent), `reply_to` a string (or null/absent), `delay` a number ≥ 0.
Result<ControlFields> read_control_fields(const json& obj);

/// 64-bit hash of (task, args, kwargs), the identity the Blocker compares (§8.1): equal JSON
/// values hash equally whatever their key order; a missing key hashes like null, so a message
/// without `args` and one with `"args": []` differ.
std::uint64_t identity_hash(const json& obj);

/// Serializes like Python's json.dumps: ASCII-only (\uXXXX escapes, surrogate pairs),
/// ", " and ": " separators, floats as Python's repr. Invalid UTF-8 is replaced with U+FFFD
/// rather than thrown. Keys come out sorted (nlohmann::json keeps them so). NaN and infinities
/// are written as null (Python would write the non-JSON NaN/Infinity). Recurses once per
/// nesting level: fine for anything parse_json/decode_payload produced (≤ kMaxJsonDepth).
std::string dump_python(const json& value);

/// Serializes compactly (",", ":"), ASCII-only, invalid UTF-8 replaced.
std::string dump_compact(const json& value);

/// A random UUID4 in canonical form ("8-4-4-4-12", lower-case hex).
std::string uuid4();
/// A random UUID4 with '-' replaced by '_' (36 chars), for channel names (§3.1.6, §4.2).
std::string uuid4_underscored();
/// 32 lower-case hex characters (uuid4().hex), for chunk message ids.
std::string uuid4_hex();

}  // namespace dispatcherd
