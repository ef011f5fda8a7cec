#!/usr/bin/env escript
%% dets_stall.escript: the DETS row of `cargo xtask bench` (compaction stall).
%%
%% Usage: escript dets_stall.escript PATH N VALUE_SIZE RATE WORKERS WARMUP_MS CAUGHT_UP_MS
%%            MAX_WARMUP_MS MIN_SETTLE_MS MAX_SETTLE_MS MIN_BASELINE_MS
%%
%% Builds a DETS set at PATH with N records ({Key, Bit, Value}, Value a VALUE_SIZE-byte
%% binary, Bit random), deletes the records whose Bit is 1 (about half, at random), then runs
%% WORKERS client processes issuing, between them, RATE operations per second on a fixed
%% schedule (one in five a dets:insert, the others dets:lookup, of a random key; operation I
%% is issued by process I rem WORKERS). After WARMUP_MS, and once an operation has completed
%% within CAUGHT_UP_MS of its schedule (at most MAX_WARMUP_MS in all), the main process
%% "compacts" the table the DETS way:
%% dets:close/1, then dets:open_file/2 with {repair, force}, which rewrites the file. While
%% the table is closed or being repaired the client's operations fail; the client retries each
%% one until it succeeds. Latency is measured from each operation's scheduled time, so the
%% stall counts against every operation it delayed. After the compaction the client keeps
%% going through a settling period as long as the compaction (clamped to MIN_SETTLE_MS ..
%% MAX_SETTLE_MS), then through a baseline window as long as the compaction and the settling
%% period together (at least MIN_BASELINE_MS).
%%
%% Prints one JSON object: records, deleted, build_ms, bytes_before, bytes_after,
%% compact_from_us, compact_to_us, settled_us (end of the settling period), baseline_to_us
%% (since the client started), and samples, a list of [scheduled_at_us, latency_us].

-mode(compile).

main([Path, NStr, VSStr, RateStr, WorkersStr, WarmupStr, CaughtUpStr, MaxWarmupStr, MinSettleStr,
      MaxSettleStr, MinBaselineStr]) ->
    N = list_to_integer(NStr),
    VS = list_to_integer(VSStr),
    Rate = list_to_integer(RateStr),
    Workers = list_to_integer(WorkersStr),
    WarmupMs = list_to_integer(WarmupStr),
    CaughtUpUs = list_to_integer(CaughtUpStr) * 1000,
    MaxWarmupMs = list_to_integer(MaxWarmupStr),
    MinSettleMs = list_to_integer(MinSettleStr),
    MaxSettleMs = list_to_integer(MaxSettleStr),
    MinBaselineMs = list_to_integer(MinBaselineStr),
    file:delete(Path),
    T0 = now_us(),
    %% Built in memory (ram_file) and written out at close: the same file, built faster.
    {ok, stall} = dets:open_file(stall, [{file, Path}, {type, set}, {ram_file, true}]),
    build(N, VS, 0),
    %% Every record carries a random bit chosen at build time; one select_delete removes the
    %% records whose bit is set (about half, at random), much faster than N single deletes.
    Deleted = dets:select_delete(stall, [{{'_', 1, '_'}, [], [true]}]),
    ok = dets:close(stall),
    {ok, stall} = dets:open_file(stall, [{file, Path}, {type, set}]),
    BuildMs = (now_us() - T0) div 1000,
    Before = filelib:file_size(Path),
    Self = self(),
    Start = now_us(),
    %% The latency of the last completed operation, for the warm-up.
    Last = atomics:new(1, []),
    atomics:put(Last, 1, 1 bsl 62),
    Clients = [spawn(fun() -> client(Self, Last, N, VS, Rate, Workers, Start, W, []) end)
               || W <- lists:seq(0, Workers - 1)],
    timer:sleep(WarmupMs),
    warm_up(Last, CaughtUpUs, Start + MaxWarmupMs * 1000),
    C0 = now_us(),
    ok = dets:close(stall),
    {ok, stall} = dets:open_file(stall, [{file, Path}, {type, set}, {repair, force}]),
    C1 = now_us(),
    After = filelib:file_size(Path),
    timer:sleep(min(MaxSettleMs, max(MinSettleMs, (C1 - C0) div 1000))),
    B0 = now_us(),
    timer:sleep(max(MinBaselineMs, (B0 - C0) div 1000)),
    B1 = now_us(),
    [C ! stop || C <- Clients],
    Samples = lists:sort(lists:append([receive {samples, S} -> S end || _ <- Clients])),
    ok = dets:close(stall),
    file:delete(Path),
    SampleText = lists:join(",", [io_lib:format("[~b,~b]", [At, Lat]) || {At, Lat} <- Samples]),
    io:format("{\"records\":~b,\"deleted\":~b,\"build_ms\":~b,\"bytes_before\":~b,\"bytes_after\":~b,"
              "\"compact_from_us\":~b,\"compact_to_us\":~b,\"settled_us\":~b,\"baseline_to_us\":~b,"
              "\"samples\":[~s]}~n",
              [N, Deleted, BuildMs, Before, After, C0 - Start, C1 - Start, B0 - Start, B1 - Start, SampleText]);
main(_) ->
    io:format(standard_error, "usage: dets_stall.escript PATH N VALUE_SIZE RATE WORKERS WARMUP_MS CAUGHT_UP_MS MAX_WARMUP_MS "
                "MIN_SETTLE_MS MAX_SETTLE_MS MIN_BASELINE_MS~n", []),
    halt(2).

now_us() -> erlang:monotonic_time(microsecond).

value(Key, VS) -> binary:part(binary:copy(<<Key:64>>, VS div 8 + 1), 0, VS).

build(N, _VS, From) when From >= N -> ok;
build(N, VS, From) ->
    To = min(N, From + 5000) - 1,
    ok = dets:insert(stall, [{K, rand:uniform(2) - 1, value(K, VS)} || K <- lists:seq(From, To)]),
    build(N, VS, To + 1).

warm_up(Last, CaughtUpUs, Deadline) ->
    case atomics:get(Last, 1) > CaughtUpUs andalso now_us() < Deadline of
        true -> timer:sleep(10), warm_up(Last, CaughtUpUs, Deadline);
        false -> ok
    end.

client(Parent, Last, N, VS, Rate, Workers, Start, I, Acc) ->
    receive
        stop -> Parent ! {samples, lists:reverse(Acc)}
    after 0 ->
        Due = Start + (I * 1000000) div Rate,
        wait_until(Due),
        H = erlang:phash2({I, 16#5eed}, 1 bsl 32),
        do_op(H rem N, H rem 5 =:= 0, VS),
        Lat = now_us() - Due,
        atomics:put(Last, 1, Lat),
        client(Parent, Last, N, VS, Rate, Workers, Start, I + Workers, [{Due - Start, Lat} | Acc])
    end.

%% Erlang timers have millisecond resolution: an operation may start up to about 1 ms after
%% its scheduled time, which its latency includes. (Spinning instead would take the CPU the
%% DETS server needs.)
wait_until(Due) ->
    Ahead = Due - now_us(),
    if
        Ahead > 0 -> timer:sleep((Ahead + 999) div 1000);
        true -> ok
    end.

%% Retry until the table answers: it is closed, or being repaired, during the compaction.
do_op(Key, Put, VS) ->
    Result = try
                 case Put of
                     true -> dets:insert(stall, {Key, 0, value(Key, VS)});
                     false -> dets:lookup(stall, Key)
                 end
             catch
                 _:_ -> {error, closed}
             end,
    case Result of
        {error, _} -> timer:sleep(1), do_op(Key, Put, VS);
        _ -> ok
    end.
