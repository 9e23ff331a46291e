package tunnel

import (
	"errors"
	"io"
	"net"
)

// halfCloser is a connection that can shut its write side (TCP, Stream).
type halfCloser interface {
	CloseWrite() error
}

// Splice copies bytes both ways between a stream and a connection until
// both directions have finished, passing half-closes through: when one side
// stops sending, the other side's write half is shut and the reverse
// direction keeps flowing. An error in either direction resets the stream
// and closes the connection. Splice closes both before it returns.
func Splice(st *Stream, conn net.Conn) {
	errc := make(chan error, 2)
	go func() {
		// Hide WriterTo/ReaderFrom so reads are one data frame large.
		buf := make([]byte, st.s.cfg.MaxData)
		_, err := io.CopyBuffer(struct{ io.Writer }{st}, struct{ io.Reader }{conn}, buf)
		if err == nil {
			err = st.CloseWrite()
		}
		errc <- err
	}()
	go func() {
		buf := make([]byte, st.s.cfg.MaxData)
		_, err := io.CopyBuffer(struct{ io.Writer }{conn}, struct{ io.Reader }{st}, buf)
		if err == nil {
			if hc, ok := conn.(halfCloser); ok {
				err = hc.CloseWrite()
			}
		}
		errc <- err
	}()
	for range 2 {
		if err := <-errc; err != nil {
			var re *ReasonError
			if !errors.As(err, &re) {
				st.Reset(ReasonNormal, "connection error: "+err.Error())
			}
			_ = conn.Close()
		}
	}
	_ = conn.Close()
	_ = st.Close()
}
