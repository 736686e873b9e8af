// libFuzzer target: YAML text through the config loader (load_config_text). Invariants:
// nothing throws or crashes (deep nesting included); an error is one `fuzz.yml:...` message;
// a loaded config keeps the bounds the loader promises.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dispatcherd/config.h"
#include "dispatcherd/log.h"

using namespace dispatcherd;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(log::Level::Critical);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Result<Config> cfg = load_config_text(text, "fuzz.yml");
  if (!cfg) {
    const std::string& m = cfg.error().message;
    check(m.rfind("fuzz.yml", 0) == 0);
    return 0;
  }
  check(cfg->pool.min_workers >= 0);
  check(!cfg->pool.max_workers || *cfg->pool.max_workers >= cfg->pool.min_workers);
  check(cfg->metrics.port >= 0 && cfg->metrics.port <= 65535);
  check(!cfg->pg_notify.enabled || !cfg->pg_notify.conninfo.empty());
  for (const std::string& w : cfg->warnings) check(w.rfind("fuzz.yml", 0) == 0);
  return 0;
}
