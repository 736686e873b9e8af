#include "dispatcherd/channel_name.h"

namespace dispatcherd {

Status validate_channel_name(std::string_view name) {
  // Same order as upstream: the length check first, then blank.
  if (name.size() > kMaxChannelNameBytes)
    return Error{"Channel name is too long chars=" + std::to_string(name.size())};
  if (name.empty())
    return Error{"Received blank channel name . PG notify channel name can not be blank."};
  if (name.find('\0') != std::string_view::npos) return Error{"Channel name contains a NUL byte"};
  return Ok{};
}

std::string quote_identifier(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out.push_back('"');
  for (char ch : name) {
    if (ch == '"') out.push_back('"');
    out.push_back(ch);
  }
  out.push_back('"');
  return out;
}

}  // namespace dispatcherd
