// SPDX-License-Identifier: MIT

//go:build !linux

package mqtt

import (
	"errors"
	"sync/atomic"
	"syscall"
)

// parker is Linux-only (epoll); elsewhere connections never park.
type parker struct{ n atomic.Int64 }

func newParker() (*parker, error) { return nil, errors.New("parking idle connections needs Linux") }

func (p *parker) add(*connReader) uint64                  { return 0 }
func (p *parker) forget(uint64)                           {}
func (p *parker) arm(syscall.RawConn, uint64, bool) error { return errors.ErrUnsupported }
func (p *parker) close() error                            { return nil }
