#include "dispatcherd/control_protocol.h"

#include <nlohmann/json.hpp>

#include "json_text.h"

namespace dispatcherd {

std::span<const ControlCommandInfo> control_commands() {
  return kControlCommands;
}

const ControlCommandInfo* find_control_command(std::string_view name) {
  for (const ControlCommandInfo& c : kControlCommands)
    if (c.name == name) return &c;
  return nullptr;
}

std::string unknown_log_level_error(std::string_view given) {
  std::string out = "Unknown log level '";
  out += given;
  out += "'.";
  return out;
}

namespace {

void append_ordered(std::string& out, const nlohmann::ordered_json& v) {
  using T = nlohmann::ordered_json::value_t;
  switch (v.type()) {
    case T::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v) {
        if (!first) out += ", ";
        first = false;
        append_ordered(out, item);
      }
      out += ']';
      return;
    }
    case T::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        out += '"';
        text::append_escaped(out, it.key());
        out += "\": ";
        append_ordered(out, it.value());
      }
      out += '}';
      return;
    }
    default: {
      // Scalars: reuse the one Python-compatible writer (floats, escapes) by converting the
      // leaf; a scalar has no keys, so nothing is reordered.
      nlohmann::json leaf = v;
      text::append_json(out, leaf, /*python_separators=*/true);
      return;
    }
  }
}

}  // namespace

std::string dump_reply(const nlohmann::ordered_json& reply) {
  std::string out;
  append_ordered(out, reply);
  return out;
}

}  // namespace dispatcherd
