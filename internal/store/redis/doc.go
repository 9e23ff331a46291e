// Package redis is lastmile's store for several nodes: every domain store
// interface and the broker's session store on one Redis (go-redis v9).
//
//	key ({prefix} defaults to "lastmile:")   type     holds
//	{prefix}dev:{id}                          string   registry.Device (JSON)
//	{prefix}devs                              zset     device IDs, for ordered paging
//	{prefix}pres:{id}                         string   registry.Presence (JSON)
//	{prefix}node:{node}                       set      device IDs online on a node
//	{prefix}role:{name}, {prefix}roles        string, zset
//	{prefix}app:{name},  {prefix}apps         string, zset
//	{prefix}tok:{id},    {prefix}toks         string, zset
//	{prefix}s:{bucket}                        hash     session key -> value
//	{prefix}s:{bucket}:idx                    zset     session keys, for ordered prefix scans
//
// Every read-modify-write (create-if-absent, revision compare-and-set,
// stale-disconnect checks, deletes that touch indexes) is one Lua script,
// so it is atomic without WATCH retries. Session batches are one
// MULTI/EXEC. Durability is Redis's: run it with appendonly yes and
// appendfsync always (or everysec, accepting a second of loss).
package redis
