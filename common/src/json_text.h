#pragma once
// Internal to dispatcherd_common: UTF-8 walking and JSON text output shared by message.cpp and
// chunking.cpp. The escaping here must agree byte for byte with Python's json.dumps
// (ensure_ascii=True), because the chunk splitter budgets with escape_cost() and then
// serializes with append_escaped().

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace dispatcherd::text {

/// One decoded UTF-8 sequence. An invalid byte decodes as a one-byte sequence with
/// valid = false; the writers below replace it with U+FFFD.
struct CodePoint {
  char32_t cp = 0;
  std::size_t len = 1;
  bool valid = true;
};

/// Decodes the sequence starting at s[i] (i < s.size()). Rejects overlong forms, surrogates
/// and values above U+10FFFF, like nlohmann's lexer and Python's decoder.
CodePoint decode_utf8(std::string_view s, std::size_t i);

/// Bytes the code point takes inside an ASCII-only JSON string (§2.4 step 3): 1, 2, 6 or 12;
/// an invalid byte costs 6 because it is written as \ufffd.
inline std::size_t escape_cost(const CodePoint& c) {
  if (!c.valid) return 6;
  const char32_t v = c.cp;
  if (v == '"' || v == '\\' || v == '\n' || v == '\r' || v == '\t' || v == '\b' || v == '\f')
    return 2;
  if (v < 0x20 || v == 0x7F) return 6;
  if (v < 0x7F) return 1;
  return v > 0xFFFF ? 12 : 6;
}

/// Appends `s` as the body of a JSON string (no quotes), ASCII-only, invalid UTF-8 replaced.
void append_escaped(std::string& out, std::string_view s);

/// Appends `s` with every invalid UTF-8 byte replaced by U+FFFD (raw UTF-8, not escaped).
std::string sanitize_utf8(std::string_view s);

/// Number of code points in `s` (each invalid byte counts as one).
std::size_t code_points(std::string_view s);

/// Appends a double the way Python's float.__repr__ prints it (0.1, 1e-07, 3.0,
/// 1000000000000000.0, 1e+16). NaN and infinities are written as null: Python would write
/// NaN/Infinity, which is not JSON and which our own decoder (and nlohmann) would reject.
void append_double(std::string& out, double d);

/// Appends `value` as JSON text: ASCII-only, keys in the json's (sorted) order, separators
/// ", "/": " when `python_separators`, else ","/":".
void append_json(std::string& out, const nlohmann::json& value, bool python_separators);

/// True when brackets outside strings nest deeper than `max_depth` somewhere in `s`. A cheap
/// pre-check so that no recursive code (dump, ==, destructors of old nlohmann) ever sees an
/// attacker-chosen depth.
bool nesting_exceeds(std::string_view s, std::size_t max_depth);

}  // namespace dispatcherd::text
