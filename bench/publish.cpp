// bench_publish: publishes a burst of tasks and exits (the backlog of `make bench`'s memory and
// drain figures).
//
//   bench_publish --dsn DSN --channel CH --count N [--batch 100] [--method batch|single|lib]
//                 [--payload 200] [--task NAME] [--tag T] [--stamp-file F]
//
// With --stamp-file, the first and the last message are `bench.stamp` tasks recording into F
// (uuids "<tag>-first" and "<tag>-last") around count-2 tasks of --task: the service runs its
// queue in order, so the two records time how fast it drained what lay between them.
// Prints one JSON object: tasks, notifications and seconds spent publishing.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "support.h"

int main(int argc, char** argv) {
  std::string dsn, stamp_file;
  bench::Burst b;
  b.tag = std::string("p").append(std::to_string(getpid()));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dsn")
      dsn = v;
    else if (k == "--channel")
      b.channel = v;
    else if (k == "--count")
      b.count = std::atoi(v.c_str());
    else if (k == "--batch")
      b.batch = std::max(1, std::atoi(v.c_str()));
    else if (k == "--method")
      b.method = bench::parse_method(v);
    else if (k == "--payload")
      b.payload = std::atoi(v.c_str());
    else if (k == "--task")
      b.task = v;
    else if (k == "--tag")
      b.tag = v;
    else if (k == "--stamp-file")
      stamp_file = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (dsn.empty() || b.channel.empty() || b.count < (stamp_file.empty() ? 1 : 2)) {
    std::fprintf(stderr,
                 "usage: bench_publish --dsn DSN --channel CH --count N [--batch B]"
                 " [--method batch|single|lib] [--payload BYTES] [--task NAME]"
                 " [--tag T] [--stamp-file F]\n");
    return 2;
  }
  if (b.method == bench::Method::Single) b.batch = 1;
  b.conninfo = dsn;
  bench::Conn c = bench::connect(dsn);
  auto stamp = [&](const char* which) {
    bench::publish_stamp(c.get(), b.channel, b.tag + "-" + which, stamp_file);
  };
  auto t0 = bench::Clock::now();
  long notifications = 0;
  if (!stamp_file.empty()) {
    stamp("first");
    b.count -= 2;
  }
  notifications += bench::publish(c.get(), b);
  if (!stamp_file.empty()) {
    stamp("last");
    b.count += 2;
    notifications += 2;
  }
  nlohmann::json out = {{"tasks", b.count},
                        {"notifications", notifications},
                        {"seconds", bench::secs(t0, bench::Clock::now())}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
