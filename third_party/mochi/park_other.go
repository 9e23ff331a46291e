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

type poller struct{}

type evloop struct{ batch writeBatch }

const (
	armAdd = iota
	armAgain
)

func newParker() (*parker, error) { return nil, errors.New("parking idle connections needs Linux") }

func (p *parker) assign() *poller                         { return nil }
func (p *parker) close() error                            { return nil }
func (po *poller) add(*connReader) uint64                 { return 0 }
func (po *poller) forget(uint64)                          {}
func (po *poller) arm(syscall.RawConn, uint64, int) error { return errors.ErrUnsupported }
func (lp *evloop) handOver()                              {}
func (lp *evloop) alone() bool                            { return true }
