#include "dispatcherd/message.h"

#include <cmath>
#include <cstring>
#include <string>
#include <tuple>

#include "identity_hasher.h"
#include "json_text.h"

namespace dispatcherd {

namespace {

using T = json::value_t;

std::string field_error(std::string_view field, std::string_view expected, const json& got) {
  std::string m = "field '";
  m += field;
  m += "' must be ";
  m += expected;
  m += ", got ";
  m += got.type_name();
  return m;
}

// A duration in seconds (`timeout`, `delay`). Upstream treats any falsy value as "none"; we
// accept absent, null and 0 as none and refuse what Python would crash on or misread.
Result<double> read_seconds(const json& obj, const char* field) {
  const auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return 0.0;
  if (!it->is_number()) return Error{field_error(field, "a number", *it)};
  const double v = it->get<double>();
  if (!std::isfinite(v)) return Error{std::string("field '") + field + "' must be finite"};
  if (v < 0) return Error{std::string("field '") + field + "' must not be negative"};
  return v;
}

// Checks an optional field's type; null counts as absent when `null_ok`.
Status check_type(const json& obj, const char* field, T type, const char* expected, bool null_ok) {
  const auto it = obj.find(field);
  if (it == obj.end() || (null_ok && it->is_null())) return Ok{};
  if (it->type() != type) return Error{field_error(field, expected, *it)};
  return Ok{};
}

// identity_hash()'s walk over a parsed value; message_scan.cpp walks the text the same way.
void hash_value(text::IdentityHasher& h, const json& v, int depth) {
  if (depth > static_cast<int>(kMaxJsonDepth)) {
    h.u8(0xFF);  // deterministic, so equal values still hash equally
    return;
  }
  switch (v.type()) {
    case T::null:
      h.u8(0);
      break;
    case T::boolean:
      h.u8(v.get<bool>() ? 2 : 1);
      break;
    case T::number_integer:
    case T::number_unsigned:
    case T::number_float:
      h.number(v.get<double>());
      break;
    case T::string:
      h.str(v.get_ref<const std::string&>());
      break;
    case T::array: {
      text::IdentityHasher elements;
      for (const auto& e : v) hash_value(elements, e, depth + 1);
      h.array(v.size(), elements.finish());
      break;
    }
    case T::object: {
      std::uint64_t sum = 0;
      for (auto it = v.begin(); it != v.end(); ++it) {
        text::IdentityHasher member;
        member.str(it.key());
        hash_value(member, it.value(), depth + 1);
        sum += member.finish();
      }
      h.object(v.size(), sum);
      break;
    }
    case T::binary:
      h.u8(7);
      h.u64(v.get_binary().size());
      h.bytes(v.get_binary().data(), v.get_binary().size());
      break;
    case T::discarded:
    default:
      h.u8(8);
      break;
  }
}

}  // namespace

std::optional<OnDuplicate> on_duplicate_from_name(std::string_view name) {
  for (OnDuplicate d :
       {OnDuplicate::Parallel, OnDuplicate::Discard, OnDuplicate::Serial, OnDuplicate::QueueOne})
    if (on_duplicate_name(d) == name) return d;
  return std::nullopt;
}

std::string_view on_duplicate_name(OnDuplicate d) {
  switch (d) {
    case OnDuplicate::Discard:
      return "discard";
    case OnDuplicate::Serial:
      return "serial";
    case OnDuplicate::QueueOne:
      return "queue_one";
    case OnDuplicate::Parallel:
    default:
      return "parallel";
  }
}

namespace {

// parse_json, also telling "valid but too deep" (`too_deep`) from "not JSON".
Result<json> parse_impl(std::string_view text, bool& too_deep) {
  too_deep = false;
  // Python's json.loads refuses a BOM that nlohmann would skip.
  if (text.starts_with("\xEF\xBB\xBF")) return Error{"not JSON: starts with a UTF-8 BOM"};
  try {
    if (text::nesting_exceeds(text, kMaxJsonDepth)) {
      // accept() is iterative, so it can say whether this is JSON without recursing.
      if (json::accept(text.begin(), text.end())) {
        too_deep = true;
        return Error{"JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
      }
      return Error{"not JSON"};
    }
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Error{"not JSON"};
    return j;
  } catch (const json::exception& e) {
    return Error{std::string("not JSON: ") + e.what()};
  } catch (const std::exception& e) {  // bad_alloc on absurd input: refuse, don't die here
    return Error{std::string("cannot parse: ") + e.what()};
  }
}

}  // namespace

Result<json> parse_json(std::string_view text) {
  bool too_deep;
  return parse_impl(text, too_deep);
}

Result<json> decode_payload(std::string_view payload) {
  bool too_deep;
  Result<json> parsed = parse_impl(payload, too_deep);
  if (!parsed) {
    if (too_deep) return parsed.error();
    // Not JSON: the raw text is a bare task body (§2.1), e.g. `lambda: "This worked!"`.
    json bare = json::object();
    bare["task"] = text::sanitize_utf8(payload);
    return bare;
  }
  if (!parsed->is_object()) {
    return Error{std::string("payload is JSON but not an object: ") + parsed->type_name()};
  }
  return parsed;
}

bool is_chunk(const json& obj) {
  return obj.is_object() && obj.contains("__dispatcherd_chunk__");
}

bool is_control(const json& obj) {
  return obj.is_object() && obj.contains("control");
}

Result<TaskFields> read_task_fields(const json& obj) {
  if (!obj.is_object())
    return Error{std::string("message must be an object, got ") + obj.type_name()};
  TaskFields f;
  const auto task = obj.find("task");
  if (task == obj.end()) return Error{"field 'task' is required"};
  if (!task->is_string()) return Error{field_error("task", "a string", *task)};
  f.task = task->get<std::string>();
  if (f.task.empty()) return Error{"field 'task' must not be empty"};

  if (const auto uuid = obj.find("uuid"); uuid != obj.end() && !uuid->is_null()) {
    if (!uuid->is_string()) return Error{field_error("uuid", "a string", *uuid)};
    f.uuid = uuid->get<std::string>();
  }
  for (const auto& [field, type, expected, null_ok] :
       {std::tuple{"args", T::array, "an array", false},
        std::tuple{"kwargs", T::object, "an object", false},
        std::tuple{"callbacks", T::array, "an array", true},
        std::tuple{"errbacks", T::array, "an array", true}}) {
    if (Status s = check_type(obj, field, type, expected, null_ok); !s) return s.error();
  }
  auto timeout = read_seconds(obj, "timeout");
  if (!timeout) return timeout.error();
  f.timeout = *timeout;
  auto delay = read_seconds(obj, "delay");
  if (!delay) return delay.error();
  f.delay = *delay;

  if (const auto od = obj.find("on_duplicate"); od != obj.end() && !od->is_null()) {
    if (!od->is_string()) return Error{field_error("on_duplicate", "a string", *od)};
    const auto& name = od->get_ref<const std::string&>();
    if (auto known = on_duplicate_from_name(name)) {
      f.on_duplicate = *known;
    } else {
      f.on_duplicate = OnDuplicate::Parallel;
      f.on_duplicate_unknown = true;
    }
  }
  return f;
}

Result<ControlFields> read_control_fields(const json& obj) {
  if (!obj.is_object())
    return Error{std::string("message must be an object, got ") + obj.type_name()};
  ControlFields f;
  const auto control = obj.find("control");
  if (control == obj.end()) return Error{"field 'control' is required"};
  if (!control->is_string()) return Error{field_error("control", "a string", *control)};
  f.command = control->get<std::string>();

  if (const auto data = obj.find("control_data"); data != obj.end() && !data->is_null()) {
    if (!data->is_object()) return Error{field_error("control_data", "an object", *data)};
    f.data = *data;
  }
  if (const auto reply = obj.find("reply_to"); reply != obj.end() && !reply->is_null()) {
    if (!reply->is_string()) return Error{field_error("reply_to", "a string", *reply)};
    f.reply_to = reply->get<std::string>();
  }
  auto delay = read_seconds(obj, "delay");
  if (!delay) return delay.error();
  f.delay = *delay;
  return f;
}

std::uint64_t identity_hash(const json& obj) {
  std::uint64_t parts[3];
  int i = 0;
  for (const char* key : {"task", "args", "kwargs"}) {
    parts[i] = text::null_hash();
    if (obj.is_object()) {
      if (const auto it = obj.find(key); it != obj.end()) {
        text::IdentityHasher h;
        hash_value(h, *it, 0);
        parts[i] = h.finish();
      }
    }
    ++i;
  }
  return text::combine_identity(parts[0], parts[1], parts[2]);
}

std::string dump_python(const json& value) {
  std::string out;
  text::append_json(out, value, /*python_separators=*/true);
  return out;
}

std::string dump_compact(const json& value) {
  std::string out;
  text::append_json(out, value, /*python_separators=*/false);
  return out;
}

}  // namespace dispatcherd
