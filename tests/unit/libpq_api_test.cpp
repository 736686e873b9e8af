// The dlopen'ed libpq table (dispatcherd/libpq_api.h): a library or function that cannot be
// found is an error naming it, never a crash at the first call.

#include "dispatcherd/libpq_api.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace dispatcherd {
namespace {

TEST(LibPqApi, LoadsEveryFunctionOnce) {
  auto loaded = libpq();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
#define DISPATCHERD_EXPECT_LOADED(name) EXPECT_NE((*loaded)->name, nullptr) << #name;
  DISPATCHERD_LIBPQ_FUNCTIONS(DISPATCHERD_EXPECT_LOADED)
#undef DISPATCHERD_EXPECT_LOADED
  auto again = libpq();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *loaded);
  // The table works: libpq's own parser knows its keywords.
  char* err = nullptr;
  PQconninfoOption* opts = (*loaded)->PQconninfoParse("host=h port=1", &err);
  ASSERT_NE(opts, nullptr);
  (*loaded)->PQconninfoFree(opts);
}

TEST(LibPqApi, AMissingLibraryIsAnErrorNamingIt) {
  auto loaded = load_libpq("libdispatcherd-no-such-library.so.0");
  ASSERT_FALSE(loaded.ok());
  const std::string& m = loaded.error().message;
  EXPECT_EQ(m.rfind("cannot load libdispatcherd-no-such-library.so.0: ", 0), 0u) << m;
  EXPECT_NE(m.find("cannot open shared object file"), std::string::npos) << m;
}

TEST(LibPqApi, ALibraryWithoutTheFunctionsIsAnErrorNamingTheFirstMissing) {
  // libc is loaded in every process, so this only takes and drops a reference to it.
  auto loaded = load_libpq("libc.so.6");
  ASSERT_FALSE(loaded.ok());
  const std::string& m = loaded.error().message;
  EXPECT_EQ(m.rfind("cannot load libc.so.6: ", 0), 0u) << m;
  EXPECT_NE(m.find("PQconnectdbParams"), std::string::npos) << m;
}

TEST(LibPqApi, SingleThreadedLoadLeavesTheEnvironmentAsItWas) {
  // GNUTLS_NO_IMPLICIT_INIT is set only around the load: commands that workers run must not
  // inherit it (a GnuTLS program that relies on implicit init would lose TLS).
  ::unsetenv("GNUTLS_NO_IMPLICIT_INIT");
  ASSERT_TRUE(libpq_single_threaded().ok());
  EXPECT_EQ(std::getenv("GNUTLS_NO_IMPLICIT_INIT"), nullptr);
  ::setenv("GNUTLS_NO_IMPLICIT_INIT", "0", 1);  // a caller's own setting stays
  ASSERT_TRUE(libpq_single_threaded().ok());
  ASSERT_NE(std::getenv("GNUTLS_NO_IMPLICIT_INIT"), nullptr);
  EXPECT_STREQ(std::getenv("GNUTLS_NO_IMPLICIT_INIT"), "0");
  ::unsetenv("GNUTLS_NO_IMPLICIT_INIT");
}

}  // namespace
}  // namespace dispatcherd
