#pragma once
// A hand-written sd_notify(3): tells systemd (Type=notify) that the service is ready, is
// stopping, and is alive (watchdog). No libsystemd dependency; a no-op outside systemd.

#include <string_view>

#include "dispatcherd/loop/event_loop.h"

namespace dispatcherd {

/// Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET; false when not under systemd or on error.
bool sd_notify(std::string_view state);

/// When systemd asked for a watchdog (WATCHDOG_USEC), pings it from a loop timer at half the
/// interval, so a stuck loop gets the service restarted.
void start_watchdog(EventLoop& loop);

}  // namespace dispatcherd
