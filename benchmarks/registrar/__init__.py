"""SIPp REGISTERs (digest, MD5) at a steady rate while calls' INVITE→200 is measured."""
