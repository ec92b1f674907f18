"""Where a read goes: the consistent-hash ring with bounded-load spillover (`ring`) and the coalescing of concurrent requests for one id (`coalesce`)."""
