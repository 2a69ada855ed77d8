// Package datapath moves frames between network interfaces and the
// balancer's frame handler: AF_PACKET sockets with virtio-net headers,
// classic BPF filters, recvmmsg/sendmmsg batches and the per-socket loops
// ("lanes") that run them.
//
// Facts it is built on (measured; see the project's data-path notes):
//
//   - With TSO/GSO on a sender or GRO on a NIC, AF_PACKET hands over TCP
//     frames of up to 64 KiB whose checksum is CHECKSUM_PARTIAL. Only with
//     PACKET_VNET_HDR on both receive and send do they travel on intact;
//     without it sends fail with EMSGSIZE or leave with bad checksums and TCP
//     stalls. So every socket here sets PACKET_VNET_HDR, and every buffer
//     starts with the 10-byte virtio-net header.
//   - The filter must be attached before bind(2), and socket(2) must get
//     protocol 0: otherwise unfiltered frames from every interface queue up
//     in between.
//   - Batches of 32 through recvmmsg/sendmmsg gave 2.8 times the bulk rate of
//     one frame per syscall; syscalls and copies dominate, not the NAT work.
//   - PACKET_FANOUT (hash) spreads flows over several sockets, one per
//     worker; the two directions of a NATed flow hash differently, so the
//     connection table is shared.
//
// The lanes wait on the Go runtime's network poller, so an idle balancer
// sleeps and a closed socket ends its lane.
package datapath
