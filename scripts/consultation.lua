-- consultation.lua: a dietitian's consultation room, to show fixtures of a
-- fleet (consultation_test.lua, README "A fleet in a fixture"): what the
-- room does when the server a member is connected to dies.
--
-- Protocol (every frame is a JSON object):
--   first frame  {"user":"dana","role":"dietitian","consultation":"c42"}
--                {"user":"pat","role":"patient","consultation":"c42"}
--                -> {"type":"welcome","consultation":..,"dietitian":..|null}
--   dietitian    {"advice":"more greens"}  to every patient
--   patient      {"question":"coffee?"}    to the dietitian
-- The dietitian is told {"type":"waiting","patient":..} and {"type":"gone",..};
-- patients are told {"type":"advice",..} and, when the dietitian leaves, for
-- any reason, {"type":"ended"}.
--
-- One entity per consultation (broker key) holds who is in it:
--   { dietitian = "dana" or absent, patients = { pat = "<channel id>" }, questions = n }

local es = require("es")
local M = {}

function M.initial_authorisation(channel, message)
  if type(message.user) ~= "string" or type(message.consultation) ~= "string" then
    return es.fail({ error = "user and consultation are required" })
  end
  if message.role ~= "dietitian" and message.role ~= "patient" then
    return es.fail({ error = "role is dietitian or patient" })
  end
  return { user = message.user, role = message.role, consultation = message.consultation }
end

-- The dietitian answers to "dietitian", every patient to "patients".
function M.channel_identifier(channel, channel_data)
  return channel_data.role == "dietitian" and "dietitian" or "patients"
end

function M.broker_key(channel, channel_data) return channel_data.consultation end

function M.broker_authorisation(channel, channel_data, room)
  local patients = room.patients or {}
  local welcome = { type = "welcome", consultation = channel_data.consultation }
  if channel_data.role == "dietitian" then
    if room.dietitian then return { websocket_response = es.fail({ error = "the consultation has a dietitian" }) } end
    welcome.dietitian = channel_data.user
    return {
      broker_data = { dietitian = channel_data.user, patients = patients, questions = room.questions or 0 },
      websocket_response = welcome,
    }
  end
  patients[channel_data.user] = channel.id
  welcome.dietitian = room.dietitian or es.null
  return {
    broker_data = { dietitian = room.dietitian, patients = patients, questions = room.questions or 0 },
    websocket_response = welcome,
    broker_messages = { { target = "dietitian", message = { type = "waiting", patient = channel_data.user } } },
  }
end

function M.process_websocket_message(channel, message, channel_data, room)
  if channel_data.role == "dietitian" and type(message.advice) == "string" then
    return { broker_messages = { { target = "patients", message = { type = "advice", text = message.advice } } } }
  end
  if channel_data.role == "patient" and type(message.question) == "string" then
    -- Counted in the entity: when the update loses to another instance's,
    -- this runs again on the newer count, and only that run is committed.
    local n = (room.questions or 0) + 1
    return {
      broker_data = { dietitian = room.dietitian, patients = room.patients, questions = n },
      websocket_response = { type = "asked", number = n },
      broker_messages = { { target = "dietitian", message = { type = "question", from = channel_data.user, text = message.question, number = n } } },
    }
  end
  return { websocket_response = es.fail({ error = "unknown message" }) }
end

function M.process_broker_message(channel, envelope, channel_data, room)
  return { websocket_response = envelope.message }
end

-- Runs when a member's connection closes, and, when its server died, on a
-- surviving server: the room never keeps a member who is gone.
function M.on_close(channel, channel_data, room)
  local patients = room.patients or {}
  if channel_data.role == "dietitian" then
    if next(patients) == nil then return { broker_data = es.DELETE } end
    return {
      broker_data = { patients = patients, questions = room.questions or 0 },
      broker_messages = { { target = "patients", message = { type = "ended" } } },
      side_effects = { { event = "consultation_ended", consultation = channel_data.consultation, dietitian = channel_data.user } },
    }
  end
  patients[channel_data.user] = nil
  if next(patients) == nil and not room.dietitian then return { broker_data = es.DELETE } end
  return {
    broker_data = { dietitian = room.dietitian, patients = patients, questions = room.questions or 0 },
    broker_messages = { { target = "dietitian", message = { type = "gone", patient = channel_data.user } } },
  }
end

return M
