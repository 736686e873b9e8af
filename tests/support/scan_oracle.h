#pragma once
// The oracle for main's task scanner, shared by its unit tests and its fuzz target (header
// only: the fuzz build has no test_support library). The parsed path — decode_payload(),
// is_control()/is_chunk(), read_task_fields(), identity_hash() — is the reference.

#include <string>
#include <string_view>

#include "dispatcherd/message.h"
#include "dispatcherd/message_scan.h"

namespace dispatcherd::testing {

/// "" when scan_task_message(text) either declines or returns exactly what the parsed path
/// gives; otherwise what differs.
inline std::string scan_agrees_with_parse(std::string_view text) {
  const auto scanned = scan_task_message(text);
  if (!scanned) return {};
  // The scanner vouched for valid JSON: the parsed path must not have made a bare task of it.
  if (!parse_json(text)) return "scanned text that is not JSON";
  auto decoded = decode_payload(text);
  if (!decoded) return "scanned text decode_payload refuses: " + decoded.error().message;
  if (is_control(*decoded) || is_chunk(*decoded)) return "scanned a control or chunk message";
  auto fields = read_task_fields(*decoded);
  if (!fields) return "scanned fields read_task_fields refuses: " + fields.error().message;
  const TaskFields& a = scanned->fields;
  const TaskFields& b = *fields;
  if (a.task != b.task) return "task differs: '" + a.task + "' vs '" + b.task + "'";
  if (a.uuid != b.uuid) return "uuid differs";
  if (a.timeout != b.timeout) return "timeout differs";
  if (a.delay != b.delay) return "delay differs";
  if (a.on_duplicate != b.on_duplicate || a.on_duplicate_unknown != b.on_duplicate_unknown)
    return "on_duplicate differs";
  if (scanned->identity != identity_hash(*decoded)) return "identity hash differs";
  return {};
}

}  // namespace dispatcherd::testing
