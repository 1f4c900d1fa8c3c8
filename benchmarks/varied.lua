-- compare_commits.py --varied: every request to a new path (/item/1, /item/2, ...), so no request
-- head repeats the one before it; with apps:varied no response does either.
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/item/" .. counter)
end
