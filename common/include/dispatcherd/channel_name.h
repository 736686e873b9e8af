#pragma once
// pg_notify channel names (upstream-spec §3.1.1-§3.1.2): the rule upstream checks before
// LISTEN or NOTIFY, and the quoting used for LISTEN.

#include <cstddef>
#include <string>
#include <string_view>

#include "dispatcherd/result.h"

namespace dispatcherd {

/// Longest channel name Postgres keeps (NAMEDATALEN - 1); longer identifiers are truncated,
/// which would make LISTEN and NOTIFY disagree.
inline constexpr std::size_t kMaxChannelNameBytes = 63;

/// Checks a channel name like upstream's validate_channel_name: its UTF-8 byte length must be
/// 1..63. Errors carry upstream's text ("Channel name is too long chars=N", "Received blank
/// channel name . PG notify channel name can not be blank."); a name with a NUL byte, which
/// libpq cannot pass, is refused too.
Status validate_channel_name(std::string_view name);

/// `name` as a SQL identifier for `LISTEN`: wrapped in double quotes, embedded `"` doubled,
/// so names are case-sensitive and may hold any character.
std::string quote_identifier(std::string_view name);

}  // namespace dispatcherd
