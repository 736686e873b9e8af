// upstream-spec §3.1.1-§3.1.2: pg_notify channel names.

#include "dispatcherd/channel_name.h"

#include <gtest/gtest.h>

#include <string>

namespace dispatcherd {
namespace {

std::string fire(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += "\xF0\x9F\x94\xA5";  // U+1F525, 4 bytes in UTF-8
  return out;
}

TEST(ChannelName, Spec3_1_1_AcceptsUpstreamValidExamples) {
  for (const std::string& name : {std::string("foobar"), "foobar" + fire(1), std::string("foo-bar"),
                                  std::string("-foo-bar"), std::string(63, 'a')})
    EXPECT_TRUE(validate_channel_name(name).ok()) << name;
}

TEST(ChannelName, Spec3_1_1_RejectsOver63Bytes) {
  Status s = validate_channel_name(std::string(64, 'a'));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "Channel name is too long chars=64");
}

TEST(ChannelName, Spec3_1_1_CountsUtf8BytesNotCharacters) {
  // 'a' + 22 × 🔥 is 23 characters but 89 bytes.
  Status s = validate_channel_name("a" + fire(22));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "Channel name is too long chars=89");
  // 15 × 🔥 + 3 × 'a' is exactly 63 bytes.
  EXPECT_TRUE(validate_channel_name(fire(15) + "aaa").ok());
}

TEST(ChannelName, Spec3_1_1_RejectsBlank) {
  Status s = validate_channel_name("");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message,
            "Received blank channel name . PG notify channel name can not be blank.");
}

TEST(ChannelName, RejectsNulByteLibpqCannotPass) {
  EXPECT_FALSE(validate_channel_name(std::string("a\0b", 3)).ok());
}

TEST(ChannelName, Spec3_1_2_QuoteIdentifierDoublesEmbeddedQuotes) {
  EXPECT_EQ(quote_identifier("test_channel"), "\"test_channel\"");
  EXPECT_EQ(quote_identifier("Mixed Case"), "\"Mixed Case\"");
  EXPECT_EQ(quote_identifier("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(quote_identifier(""), "\"\"");
}

}  // namespace
}  // namespace dispatcherd
