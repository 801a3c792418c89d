"""Bad-input suite: each area of the product has its own test_<area>.py here, all using
`harness.expect_rejected`. Aim: every verb and every file format, hundreds of cases."""
