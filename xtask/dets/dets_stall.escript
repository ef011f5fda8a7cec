#!/usr/bin/env escript
%% dets_stall.escript: the DETS row of `cargo xtask bench` (compaction stall).
%%
%% Usage: escript dets_stall.escript PATH N VALUE_SIZE RATE WARMUP_MS MIN_BASELINE_MS
%%
%% Builds a DETS set at PATH with N records ({Key, Bit, Value}, Value a VALUE_SIZE-byte
%% binary, Bit random), deletes the records whose Bit is 1 (about half, at random), then runs a client process issuing operations at
%% RATE per second on a fixed schedule (8 client processes) (one in five a dets:insert, the others dets:lookup, of
%% a random key). After WARMUP_MS the main process "compacts" the table the DETS way:
%% dets:close/1, then dets:open_file/2 with {repair, force}, which rewrites the file. While
%% the table is closed or being repaired the client's operations fail; the client retries each
%% one until it succeeds. Latency is measured from each operation's scheduled time, so the
%% stall counts against every operation it delayed. The client keeps going for a baseline
%% window as long as the compaction (at least MIN_BASELINE_MS) after it.
%%
%% Prints one JSON object: records, deleted, build_ms, bytes_before, bytes_after,
%% compact_from_us and compact_to_us (since the client started), and samples, a list of
%% [scheduled_at_us, latency_us].

-mode(compile).

%% Client processes; operation I is issued by process I rem ?WORKERS (as the Rust rows use 8
%% client threads).
-define(WORKERS, 8).

main([Path, NStr, VSStr, RateStr, WarmupStr, MinBaselineStr]) ->
    N = list_to_integer(NStr),
    VS = list_to_integer(VSStr),
    Rate = list_to_integer(RateStr),
    WarmupMs = list_to_integer(WarmupStr),
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
    Clients = [spawn(fun() -> client(Self, N, VS, Rate, Start, W, []) end) || W <- lists:seq(0, ?WORKERS - 1)],
    timer:sleep(WarmupMs),
    C0 = now_us(),
    ok = dets:close(stall),
    {ok, stall} = dets:open_file(stall, [{file, Path}, {type, set}, {repair, force}]),
    C1 = now_us(),
    After = filelib:file_size(Path),
    timer:sleep(max(MinBaselineMs, (C1 - C0) div 1000)),
    [C ! stop || C <- Clients],
    Samples = lists:sort(lists:append([receive {samples, S} -> S end || _ <- Clients])),
    ok = dets:close(stall),
    file:delete(Path),
    SampleText = lists:join(",", [io_lib:format("[~b,~b]", [At, Lat]) || {At, Lat} <- Samples]),
    io:format("{\"records\":~b,\"deleted\":~b,\"build_ms\":~b,\"bytes_before\":~b,\"bytes_after\":~b,"
              "\"compact_from_us\":~b,\"compact_to_us\":~b,\"samples\":[~s]}~n",
              [N, Deleted, BuildMs, Before, After, C0 - Start, C1 - Start, SampleText]);
main(_) ->
    io:format(standard_error, "usage: dets_stall.escript PATH N VALUE_SIZE RATE WARMUP_MS MIN_BASELINE_MS~n", []),
    halt(2).

now_us() -> erlang:monotonic_time(microsecond).

value(Key, VS) -> binary:part(binary:copy(<<Key:64>>, VS div 8 + 1), 0, VS).

build(N, _VS, From) when From >= N -> ok;
build(N, VS, From) ->
    To = min(N, From + 5000) - 1,
    ok = dets:insert(stall, [{K, rand:uniform(2) - 1, value(K, VS)} || K <- lists:seq(From, To)]),
    build(N, VS, To + 1).

client(Parent, N, VS, Rate, Start, I, Acc) ->
    receive
        stop -> Parent ! {samples, lists:reverse(Acc)}
    after 0 ->
        Due = Start + (I * 1000000) div Rate,
        wait_until(Due),
        H = erlang:phash2({I, 16#5eed}, 1 bsl 32),
        do_op(H rem N, H rem 5 =:= 0, VS),
        Lat = now_us() - Due,
        client(Parent, N, VS, Rate, Start, I + ?WORKERS, [{Due - Start, Lat} | Acc])
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
