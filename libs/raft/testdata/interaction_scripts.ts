/**
 * Interaction scripts for `interaction_test.ts`: a command, `----`, then the
 * trace it must produce. Expected output is regenerated with `--rewrite`
 * (see interaction_test.ts); review changes to it like code.
 *
 * @module
 */

export const SCRIPTS: Record<string, string> = {
  "quiescence": `
add-nodes 3 quiesce=2
----
voters=1,2,3 learners=

campaign 1
----
ok

stabilize
----
> 1 handling Ready
  role=preCandidate leader=none
  send 1->2 requestPreVote term=1 last=0/0
  send 1->3 requestPreVote term=1 last=0/0
> delivering messages
  1->2 requestPreVote term=1 last=0/0
  1->3 requestPreVote term=1 last=0/0
> 2 handling Ready
  send 2->1 requestPreVoteResponse term=1
> 3 handling Ready
  send 3->1 requestPreVoteResponse term=1
> delivering messages
  2->1 requestPreVoteResponse term=1
  3->1 requestPreVoteResponse term=1
> 1 handling Ready
  role=candidate leader=none
  hard state: term=1 vote=1 commit=0
  send 1->2 requestVote term=1 last=0/0
  send 1->3 requestVote term=1 last=0/0
> delivering messages
  1->2 requestVote term=1 last=0/0
  1->3 requestVote term=1 last=0/0
> 2 handling Ready
  hard state: term=1 vote=1 commit=0
  send 2->1 requestVoteResponse term=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=0
  send 3->1 requestVoteResponse term=1
> delivering messages
  2->1 requestVoteResponse term=1
  3->1 requestVoteResponse term=1
> 1 handling Ready
  role=leader leader=1
  entries: [1/1 ""]
  send 1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  send 1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> delivering messages
  1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> 2 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1
> 1 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[]
  1->3 append term=1 prev=1/1 commit=1 entries=[]
> 2 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1

propose 1 x
----
{"kind":"ok","index":2,"term":1}

stabilize
----
> 1 handling Ready
  entries: [1/2 "x"]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[1/2 "x"]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[1/2 "x"]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[1/2 "x"]
  1->3 append term=1 prev=1/1 commit=1 entries=[1/2 "x"]
> 2 handling Ready
  entries: [1/2 "x"]
  send 2->1 appendResponse term=1 index=2
> 3 handling Ready
  entries: [1/2 "x"]
  send 3->1 appendResponse term=1 index=2
> delivering messages
  2->1 appendResponse term=1 index=2
  3->1 appendResponse term=1 index=2
> 1 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 "x"]

tick 1
----
ok

stabilize
----
> 1 handling Ready
  send 1->2 heartbeat term=1 commit=2 round=1
  send 1->3 heartbeat term=1 commit=2 round=1
> delivering messages
  1->2 heartbeat term=1 commit=2 round=1
  1->3 heartbeat term=1 commit=2 round=1
> 2 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 "x"]
  send 2->1 heartbeatResponse term=1 round=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 "x"]
  send 3->1 heartbeatResponse term=1 round=1
> delivering messages
  2->1 heartbeatResponse term=1 round=1
  3->1 heartbeatResponse term=1 round=1

tick 1
----
ok

stabilize
----
> 1 handling Ready
  send 1->2 heartbeat term=1 commit=2 round=2
  send 1->3 heartbeat term=1 commit=2 round=2
  send 1->2 heartbeat term=1 commit=2 round=0 quiesce
  send 1->3 heartbeat term=1 commit=2 round=0 quiesce
> delivering messages
  1->2 heartbeat term=1 commit=2 round=2
  1->3 heartbeat term=1 commit=2 round=2
  1->2 heartbeat term=1 commit=2 round=0 quiesce
  1->3 heartbeat term=1 commit=2 round=0 quiesce
> 2 handling Ready
  send 2->1 heartbeatResponse term=1 round=2
> 3 handling Ready
  send 3->1 heartbeatResponse term=1 round=2
> delivering messages
  2->1 heartbeatResponse term=1 round=2
  3->1 heartbeatResponse term=1 round=2

status 1
----
leader term=1 leader=1 commit=2 applied=2 quiesced
voters=1,2,3 learners= epoch=0
  1: replicate match=2 next=3
  2: replicate match=2 next=3
  3: replicate match=2 next=3

status 2
----
follower term=1 leader=1 commit=2 applied=2 quiesced
voters=1,2,3 learners= epoch=0

tick 2 40
----
ok

tick 1 40
----
ok

stabilize
----


propose 1 y
----
{"kind":"ok","index":3,"term":1}

stabilize
----
> 1 handling Ready
  entries: [1/3 "y"]
  send 1->2 heartbeat term=1 commit=2 round=3
  send 1->3 heartbeat term=1 commit=2 round=3
  send 1->2 append term=1 prev=1/2 commit=2 entries=[1/3 "y"]
  send 1->3 append term=1 prev=1/2 commit=2 entries=[1/3 "y"]
> delivering messages
  1->2 heartbeat term=1 commit=2 round=3
  1->3 heartbeat term=1 commit=2 round=3
  1->2 append term=1 prev=1/2 commit=2 entries=[1/3 "y"]
  1->3 append term=1 prev=1/2 commit=2 entries=[1/3 "y"]
> 2 handling Ready
  entries: [1/3 "y"]
  send 2->1 heartbeatResponse term=1 round=3
  send 2->1 appendResponse term=1 index=3
> 3 handling Ready
  entries: [1/3 "y"]
  send 3->1 heartbeatResponse term=1 round=3
  send 3->1 appendResponse term=1 index=3
> delivering messages
  2->1 heartbeatResponse term=1 round=3
  2->1 appendResponse term=1 index=3
  3->1 heartbeatResponse term=1 round=3
  3->1 appendResponse term=1 index=3
> 1 handling Ready
  hard state: term=1 vote=1 commit=3
  committed: [1/3 "y"]
  send 1->2 append term=1 prev=1/3 commit=2 entries=[]
  send 1->3 append term=1 prev=1/3 commit=3 entries=[]
> delivering messages
  1->2 append term=1 prev=1/3 commit=2 entries=[]
  1->3 append term=1 prev=1/3 commit=3 entries=[]
> 2 handling Ready
  send 2->1 appendResponse term=1 index=3
> 3 handling Ready
  hard state: term=1 vote=1 commit=3
  committed: [1/3 "y"]
  send 3->1 appendResponse term=1 index=3
> delivering messages
  2->1 appendResponse term=1 index=3
  3->1 appendResponse term=1 index=3

tick 1 2
----
ok

stabilize
----
> 1 handling Ready
  send 1->2 heartbeat term=1 commit=3 round=4
  send 1->3 heartbeat term=1 commit=3 round=4
  send 1->2 heartbeat term=1 commit=3 round=5
  send 1->3 heartbeat term=1 commit=3 round=5
  send 1->2 heartbeat term=1 commit=3 round=0 quiesce
  send 1->3 heartbeat term=1 commit=3 round=0 quiesce
> delivering messages
  1->2 heartbeat term=1 commit=3 round=4
  1->3 heartbeat term=1 commit=3 round=4
  1->2 heartbeat term=1 commit=3 round=5
  1->3 heartbeat term=1 commit=3 round=5
  1->2 heartbeat term=1 commit=3 round=0 quiesce
  1->3 heartbeat term=1 commit=3 round=0 quiesce
> 2 handling Ready
  hard state: term=1 vote=1 commit=3
  committed: [1/3 "y"]
  send 2->1 heartbeatResponse term=1 round=4
  send 2->1 heartbeatResponse term=1 round=5
> 3 handling Ready
  send 3->1 heartbeatResponse term=1 round=4
  send 3->1 heartbeatResponse term=1 round=5
> delivering messages
  2->1 heartbeatResponse term=1 round=4
  2->1 heartbeatResponse term=1 round=5
  3->1 heartbeatResponse term=1 round=4
  3->1 heartbeatResponse term=1 round=5

tick 1 2
----
ok

stabilize
----


wake 3 leaderLost
----
ok

tick 3 10
----
ok

stabilize
----
> 3 handling Ready
  role=preCandidate leader=none
  send 3->1 requestPreVote term=2 last=1/3
  send 3->2 requestPreVote term=2 last=1/3
> delivering messages
  3->1 requestPreVote term=2 last=1/3
  3->2 requestPreVote term=2 last=1/3
> 1 handling Ready
  send 1->2 heartbeat term=1 commit=3 round=6
  send 1->3 heartbeat term=1 commit=3 round=6
> delivering messages
  1->2 heartbeat term=1 commit=3 round=6
  1->3 heartbeat term=1 commit=3 round=6
> 2 handling Ready
  send 2->1 heartbeatResponse term=1 round=6
> 3 handling Ready
  role=follower leader=1
  send 3->1 heartbeatResponse term=1 round=6
> delivering messages
  2->1 heartbeatResponse term=1 round=6
  3->1 heartbeatResponse term=1 round=6

status 3
----
follower term=1 leader=1 commit=3 applied=3
voters=1,2,3 learners= epoch=0
`,
  "election_and_replication": `
add-nodes 3
----
voters=1,2,3 learners=

campaign 1
----
ok

stabilize
----
> 1 handling Ready
  role=preCandidate leader=none
  send 1->2 requestPreVote term=1 last=0/0
  send 1->3 requestPreVote term=1 last=0/0
> delivering messages
  1->2 requestPreVote term=1 last=0/0
  1->3 requestPreVote term=1 last=0/0
> 2 handling Ready
  send 2->1 requestPreVoteResponse term=1
> 3 handling Ready
  send 3->1 requestPreVoteResponse term=1
> delivering messages
  2->1 requestPreVoteResponse term=1
  3->1 requestPreVoteResponse term=1
> 1 handling Ready
  role=candidate leader=none
  hard state: term=1 vote=1 commit=0
  send 1->2 requestVote term=1 last=0/0
  send 1->3 requestVote term=1 last=0/0
> delivering messages
  1->2 requestVote term=1 last=0/0
  1->3 requestVote term=1 last=0/0
> 2 handling Ready
  hard state: term=1 vote=1 commit=0
  send 2->1 requestVoteResponse term=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=0
  send 3->1 requestVoteResponse term=1
> delivering messages
  2->1 requestVoteResponse term=1
  3->1 requestVoteResponse term=1
> 1 handling Ready
  role=leader leader=1
  entries: [1/1 ""]
  send 1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  send 1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> delivering messages
  1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> 2 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1
> 1 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[]
  1->3 append term=1 prev=1/1 commit=1 entries=[]
> 2 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1

propose 1 hello
----
{"kind":"ok","index":2,"term":1}

stabilize
----
> 1 handling Ready
  entries: [1/2 "hello"]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[1/2 "hello"]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[1/2 "hello"]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[1/2 "hello"]
  1->3 append term=1 prev=1/1 commit=1 entries=[1/2 "hello"]
> 2 handling Ready
  entries: [1/2 "hello"]
  send 2->1 appendResponse term=1 index=2
> 3 handling Ready
  entries: [1/2 "hello"]
  send 3->1 appendResponse term=1 index=2
> delivering messages
  2->1 appendResponse term=1 index=2
  3->1 appendResponse term=1 index=2
> 1 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 "hello"]

raft-log 3
----
1/1 ""
1/2 "hello"

status 1
----
leader term=1 leader=1 commit=2 applied=2
voters=1,2,3 learners= epoch=0
  1: replicate match=2 next=3
  2: replicate match=2 next=3
  3: replicate match=2 next=3
`,
  "read_index_batch": `
add-nodes 3
----
voters=1,2,3 learners=

campaign 1
----
ok

stabilize
----
> 1 handling Ready
  role=preCandidate leader=none
  send 1->2 requestPreVote term=1 last=0/0
  send 1->3 requestPreVote term=1 last=0/0
> delivering messages
  1->2 requestPreVote term=1 last=0/0
  1->3 requestPreVote term=1 last=0/0
> 2 handling Ready
  send 2->1 requestPreVoteResponse term=1
> 3 handling Ready
  send 3->1 requestPreVoteResponse term=1
> delivering messages
  2->1 requestPreVoteResponse term=1
  3->1 requestPreVoteResponse term=1
> 1 handling Ready
  role=candidate leader=none
  hard state: term=1 vote=1 commit=0
  send 1->2 requestVote term=1 last=0/0
  send 1->3 requestVote term=1 last=0/0
> delivering messages
  1->2 requestVote term=1 last=0/0
  1->3 requestVote term=1 last=0/0
> 2 handling Ready
  hard state: term=1 vote=1 commit=0
  send 2->1 requestVoteResponse term=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=0
  send 3->1 requestVoteResponse term=1
> delivering messages
  2->1 requestVoteResponse term=1
  3->1 requestVoteResponse term=1
> 1 handling Ready
  role=leader leader=1
  entries: [1/1 ""]
  send 1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  send 1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> delivering messages
  1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> 2 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1
> 1 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[]
  1->3 append term=1 prev=1/1 commit=1 entries=[]
> 2 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1

read-index 1 7
----
{"kind":"ok","leased":false}

read-index 1 8
----
{"kind":"ok","leased":false}

process-ready 1
----
> 1 handling Ready
  send 1->2 heartbeat term=1 commit=1 round=1
  send 1->3 heartbeat term=1 commit=1 round=1

deliver-msgs 2
----
> delivering messages
  1->2 heartbeat term=1 commit=1 round=1

process-ready 2
----
> 2 handling Ready
  send 2->1 heartbeatResponse term=1 round=1

deliver-msgs 1
----
> delivering messages
  2->1 heartbeatResponse term=1 round=1

process-ready 1
----
> 1 handling Ready
  read state: {"kind":"ready","requestId":7,"index":1}
  read state: {"kind":"ready","requestId":8,"index":1}
`,
  "learner_promotion": `
add-nodes 4 learners=4
----
voters=1,2,3 learners=4

campaign 1
----
ok

stabilize
----
> 1 handling Ready
  role=preCandidate leader=none
  send 1->2 requestPreVote term=1 last=0/0
  send 1->3 requestPreVote term=1 last=0/0
> delivering messages
  1->2 requestPreVote term=1 last=0/0
  1->3 requestPreVote term=1 last=0/0
> 2 handling Ready
  send 2->1 requestPreVoteResponse term=1
> 3 handling Ready
  send 3->1 requestPreVoteResponse term=1
> delivering messages
  2->1 requestPreVoteResponse term=1
  3->1 requestPreVoteResponse term=1
> 1 handling Ready
  role=candidate leader=none
  hard state: term=1 vote=1 commit=0
  send 1->2 requestVote term=1 last=0/0
  send 1->3 requestVote term=1 last=0/0
> delivering messages
  1->2 requestVote term=1 last=0/0
  1->3 requestVote term=1 last=0/0
> 2 handling Ready
  hard state: term=1 vote=1 commit=0
  send 2->1 requestVoteResponse term=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=0
  send 3->1 requestVoteResponse term=1
> delivering messages
  2->1 requestVoteResponse term=1
  3->1 requestVoteResponse term=1
> 1 handling Ready
  role=leader leader=1
  entries: [1/1 ""]
  send 1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  send 1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  send 1->4 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> delivering messages
  1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  1->4 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> 2 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> 4 handling Ready
  role=follower leader=1
  hard state: term=1 vote=none commit=0
  entries: [1/1 ""]
  send 4->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1
  4->1 appendResponse term=1 index=1
> 1 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[]
  send 1->4 append term=1 prev=1/1 commit=1 entries=[]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[]
  1->3 append term=1 prev=1/1 commit=1 entries=[]
  1->4 append term=1 prev=1/1 commit=1 entries=[]
> 2 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> 4 handling Ready
  hard state: term=1 vote=none commit=1
  committed: [1/1 ""]
  send 4->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1
  4->1 appendResponse term=1 index=1

propose-conf-change 1 addNode 4
----
{"kind":"ok","index":2,"term":1}

stabilize
----
> 1 handling Ready
  entries: [1/2 confChange]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[1/2 confChange]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[1/2 confChange]
  send 1->4 append term=1 prev=1/1 commit=1 entries=[1/2 confChange]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[1/2 confChange]
  1->3 append term=1 prev=1/1 commit=1 entries=[1/2 confChange]
  1->4 append term=1 prev=1/1 commit=1 entries=[1/2 confChange]
> 2 handling Ready
  entries: [1/2 confChange]
  send 2->1 appendResponse term=1 index=2
> 3 handling Ready
  entries: [1/2 confChange]
  send 3->1 appendResponse term=1 index=2
> 4 handling Ready
  entries: [1/2 confChange]
  send 4->1 appendResponse term=1 index=2
> delivering messages
  2->1 appendResponse term=1 index=2
  3->1 appendResponse term=1 index=2
  4->1 appendResponse term=1 index=2
> 1 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 confChange]
  send 1->2 append term=1 prev=1/2 commit=2 entries=[]
  send 1->3 append term=1 prev=1/2 commit=2 entries=[]
  send 1->4 append term=1 prev=1/2 commit=2 entries=[]
> delivering messages
  1->2 append term=1 prev=1/2 commit=2 entries=[]
  1->3 append term=1 prev=1/2 commit=2 entries=[]
  1->4 append term=1 prev=1/2 commit=2 entries=[]
> 1 handling Ready
  send 1->2 append term=1 prev=1/2 commit=2 entries=[]
  send 1->3 append term=1 prev=1/2 commit=2 entries=[]
  send 1->4 append term=1 prev=1/2 commit=2 entries=[]
> 2 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 confChange]
  send 2->1 appendResponse term=1 index=2
> 3 handling Ready
  hard state: term=1 vote=1 commit=2
  committed: [1/2 confChange]
  send 3->1 appendResponse term=1 index=2
> 4 handling Ready
  hard state: term=1 vote=none commit=2
  committed: [1/2 confChange]
  send 4->1 appendResponse term=1 index=2
> delivering messages
  1->2 append term=1 prev=1/2 commit=2 entries=[]
  1->3 append term=1 prev=1/2 commit=2 entries=[]
  1->4 append term=1 prev=1/2 commit=2 entries=[]
  2->1 appendResponse term=1 index=2
  3->1 appendResponse term=1 index=2
  4->1 appendResponse term=1 index=2
> 2 handling Ready
  send 2->1 appendResponse term=1 index=2
> 3 handling Ready
  send 3->1 appendResponse term=1 index=2
> 4 handling Ready
  send 4->1 appendResponse term=1 index=2
> delivering messages
  2->1 appendResponse term=1 index=2
  3->1 appendResponse term=1 index=2
  4->1 appendResponse term=1 index=2

status 1
----
leader term=1 leader=1 commit=2 applied=2
voters=1,2,3,4 learners= epoch=2
  1: replicate match=2 next=3
  2: replicate match=2 next=3
  3: replicate match=2 next=3
  4: replicate match=2 next=3
`,
  "leader_transfer": `
add-nodes 3
----
voters=1,2,3 learners=

campaign 1
----
ok

stabilize
----
> 1 handling Ready
  role=preCandidate leader=none
  send 1->2 requestPreVote term=1 last=0/0
  send 1->3 requestPreVote term=1 last=0/0
> delivering messages
  1->2 requestPreVote term=1 last=0/0
  1->3 requestPreVote term=1 last=0/0
> 2 handling Ready
  send 2->1 requestPreVoteResponse term=1
> 3 handling Ready
  send 3->1 requestPreVoteResponse term=1
> delivering messages
  2->1 requestPreVoteResponse term=1
  3->1 requestPreVoteResponse term=1
> 1 handling Ready
  role=candidate leader=none
  hard state: term=1 vote=1 commit=0
  send 1->2 requestVote term=1 last=0/0
  send 1->3 requestVote term=1 last=0/0
> delivering messages
  1->2 requestVote term=1 last=0/0
  1->3 requestVote term=1 last=0/0
> 2 handling Ready
  hard state: term=1 vote=1 commit=0
  send 2->1 requestVoteResponse term=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=0
  send 3->1 requestVoteResponse term=1
> delivering messages
  2->1 requestVoteResponse term=1
  3->1 requestVoteResponse term=1
> 1 handling Ready
  role=leader leader=1
  entries: [1/1 ""]
  send 1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  send 1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> delivering messages
  1->2 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
  1->3 append term=1 prev=0/0 commit=0 entries=[1/1 ""]
> 2 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  role=follower leader=1
  entries: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1
> 1 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 1->2 append term=1 prev=1/1 commit=1 entries=[]
  send 1->3 append term=1 prev=1/1 commit=1 entries=[]
> delivering messages
  1->2 append term=1 prev=1/1 commit=1 entries=[]
  1->3 append term=1 prev=1/1 commit=1 entries=[]
> 2 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 2->1 appendResponse term=1 index=1
> 3 handling Ready
  hard state: term=1 vote=1 commit=1
  committed: [1/1 ""]
  send 3->1 appendResponse term=1 index=1
> delivering messages
  2->1 appendResponse term=1 index=1
  3->1 appendResponse term=1 index=1

transfer-leader 1 3
----
{"kind":"ok"}

stabilize
----
> 1 handling Ready
  send 1->3 timeoutNow term=1
> delivering messages
  1->3 timeoutNow term=1
> 3 handling Ready
  role=candidate leader=none
  hard state: term=2 vote=3 commit=1
  send 3->1 requestVote term=2 last=1/1 transfer
  send 3->2 requestVote term=2 last=1/1 transfer
> delivering messages
  3->1 requestVote term=2 last=1/1 transfer
  3->2 requestVote term=2 last=1/1 transfer
> 1 handling Ready
  role=follower leader=none
  hard state: term=2 vote=3 commit=1
  send 1->3 requestVoteResponse term=2
> 2 handling Ready
  role=follower leader=none
  hard state: term=2 vote=3 commit=1
  send 2->3 requestVoteResponse term=2
> delivering messages
  1->3 requestVoteResponse term=2
  2->3 requestVoteResponse term=2
> 3 handling Ready
  role=leader leader=3
  entries: [2/2 ""]
  send 3->1 append term=2 prev=1/1 commit=1 entries=[2/2 ""]
  send 3->2 append term=2 prev=1/1 commit=1 entries=[2/2 ""]
> delivering messages
  3->1 append term=2 prev=1/1 commit=1 entries=[2/2 ""]
  3->2 append term=2 prev=1/1 commit=1 entries=[2/2 ""]
> 1 handling Ready
  role=follower leader=3
  entries: [2/2 ""]
  send 1->3 appendResponse term=2 index=2
> 2 handling Ready
  role=follower leader=3
  entries: [2/2 ""]
  send 2->3 appendResponse term=2 index=2
> delivering messages
  1->3 appendResponse term=2 index=2
  2->3 appendResponse term=2 index=2
> 3 handling Ready
  hard state: term=2 vote=3 commit=2
  committed: [2/2 ""]
  send 3->1 append term=2 prev=2/2 commit=2 entries=[]
  send 3->2 append term=2 prev=2/2 commit=2 entries=[]
> delivering messages
  3->1 append term=2 prev=2/2 commit=2 entries=[]
  3->2 append term=2 prev=2/2 commit=2 entries=[]
> 1 handling Ready
  hard state: term=2 vote=3 commit=2
  committed: [2/2 ""]
  send 1->3 appendResponse term=2 index=2
> 2 handling Ready
  hard state: term=2 vote=3 commit=2
  committed: [2/2 ""]
  send 2->3 appendResponse term=2 index=2
> delivering messages
  1->3 appendResponse term=2 index=2
  2->3 appendResponse term=2 index=2

status 3
----
leader term=2 leader=3 commit=2 applied=2
voters=1,2,3 learners= epoch=0
  1: replicate match=2 next=3
  2: replicate match=2 next=3
  3: replicate match=2 next=3
`,
};
