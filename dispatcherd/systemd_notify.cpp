#include "dispatcherd/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "dispatcherd/fd.h"
#include "dispatcherd/log.h"

namespace dispatcherd {

bool sd_notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return false;
  std::size_t len = std::strlen(path);
  sockaddr_un addr{};
  if (len >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  auto alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  return ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&addr), alen) >= 0;
}

void start_watchdog(EventLoop& loop) {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec) return;
  double interval = std::strtod(usec, nullptr) / 1e6 / 2;
  if (interval <= 0) return;
  LOG_INFO("systemd watchdog: pinging every " << interval << " s");
  auto ping = std::make_shared<std::function<void()>>();
  *ping = [&loop, interval, ping] {
    sd_notify("WATCHDOG=1");
    loop.after(interval, [ping] { (*ping)(); });
  };
  (*ping)();
}

}  // namespace dispatcherd
